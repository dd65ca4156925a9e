"""dfspeer.cluster: what makes many peers one store (view, peer RPC, quorum replication)."""

from dfspeer.cluster.auth import RpcAuth
from dfspeer.cluster.records import MergeFn, lww_pick, merge_by_version
from dfspeer.cluster.replication import Replicator
from dfspeer.cluster.rpc import PeerRpcClient, PeerUnreachable, RpcError
from dfspeer.cluster.scan import ScanPage
from dfspeer.cluster.view import ClusterView

__all__ = [
    "ClusterView",
    "MergeFn",
    "PeerRpcClient",
    "PeerUnreachable",
    "Replicator",
    "RpcAuth",
    "RpcError",
    "ScanPage",
    "lww_pick",
    "merge_by_version",
]
