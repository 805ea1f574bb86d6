"""The one datatype table: what manifests may name is what the wire can carry."""

from __future__ import annotations

import numpy as np
import pytest

from common.bundle import BundleError, TensorSpec
from common.datatypes import DATATYPES


@pytest.mark.parametrize("name", sorted(DATATYPES))
def test_every_datatype_is_little_endian_and_fixed_size(name: str) -> None:
    dtype = DATATYPES[name]
    assert dtype.byteorder in ("<", "|", "=")
    assert dtype.itemsize in (1, 2, 4, 8)
    raw = np.zeros(3, dtype).tobytes()
    assert len(raw) == 3 * dtype.itemsize


@pytest.mark.parametrize("name", ["BF16", "BYTES", "FLOAT"])
def test_a_datatype_the_wire_cannot_carry_is_refused_in_a_manifest(name: str) -> None:
    assert name not in DATATYPES
    with pytest.raises(BundleError, match=f"expected a v2 datatype .* got '{name}'"):
        TensorSpec.from_json({"name": "x", "datatype": name, "shape": [2]}, "inputs[0]")


@pytest.mark.parametrize("name", sorted(DATATYPES))
def test_every_datatype_in_the_table_is_accepted_in_a_manifest(name: str) -> None:
    spec = TensorSpec.from_json({"name": "x", "datatype": name, "shape": [2]}, "inputs[0]")
    assert spec.datatype == name
