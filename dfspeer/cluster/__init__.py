"""dfspeer.cluster: what makes many peers one store (view, peer RPC, quorum replication, the
generic replicated table, anti-entropy, hinted handoff, the block manager)."""

from dfspeer.cluster.auth import RpcAuth
from dfspeer.cluster.replication import Replicator
from dfspeer.cluster.rpc import PeerRpcClient, PeerUnreachable, RpcError
from dfspeer.cluster.scan import ScanPage
from dfspeer.cluster.table import TableRegistry, TableSchema
from dfspeer.cluster.view import ClusterView

__all__ = [
    "ClusterView",
    "PeerRpcClient",
    "PeerUnreachable",
    "Replicator",
    "RpcAuth",
    "RpcError",
    "ScanPage",
    "TableRegistry",
    "TableSchema",
]
