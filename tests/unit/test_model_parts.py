"""The part sizes an S3 multipart upload keeps with its object version (``parts`` in the
objects table, dfspeer.model.objects): codec, validation and merge."""

from __future__ import annotations

from dataclasses import replace

import cbor2
import pytest

from dfspeer.model.objects import COMPLETE, UPLOADING, ObjectVersion
from tests.unit.test_model_merges import OBJECTS, _release_record, canon, entry


def with_parts(parts: tuple[int, ...], state: str = COMPLETE) -> ObjectVersion:
    bare = ObjectVersion.from_record({**_release_record(3), "state": state})
    return replace(bare, size=sum(parts), inline=bytes(sum(parts)), parts=parts)


def test_parts_round_trip_and_a_version_without_them_keeps_its_record() -> None:
    version = with_parts((2, 0, 1))  # an empty part is a part
    assert version.to_record()["parts"] == [2, 0, 1]
    wire = cbor2.loads(cbor2.dumps(OBJECTS.encode(entry(version)), canonical=True))
    assert OBJECTS.decode(wire).versions == (version,)
    assert "parts" not in ObjectVersion.from_record(_release_record(1)).to_record()


@pytest.mark.parametrize("parts", [[1, 1], [4, -1], ["x"], [3, 1, 1]])
def test_parts_that_do_not_add_up_to_the_size_are_refused(parts: list[object]) -> None:
    record = {**_release_record(1), "parts": parts}  # the release record's size is 3
    with pytest.raises(ValueError, match="malformed object version"):
        ObjectVersion.from_record(record)


@pytest.mark.parametrize("state", [UPLOADING, COMPLETE])
def test_the_copy_that_kept_its_parts_wins_the_merge(state: str) -> None:
    kept = with_parts((1, 2), state)
    bare = replace(kept, parts=())  # re-encoded by a peer of an earlier release
    joins = [OBJECTS.merge(entry(kept), entry(bare)), OBJECTS.merge(entry(bare), entry(kept))]
    assert {canon(OBJECTS, j) for j in joins} == {canon(OBJECTS, entry(kept))}
