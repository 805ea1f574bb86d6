"""Wire compatibility with Triton's own definition of the service.

tritonclient ships Triton's compiled grpc_service.proto. It cannot be loaded in this
process next to ours (both define ``inference.*`` in protobuf's default descriptor pool),
so a subprocess dumps its descriptor and we compare message by message: every message
and RPC we define must exist there with the same fields, numbers, types and labels.
"""

import importlib.util
import subprocess
import sys

import pytest
from google.protobuf import descriptor_pb2

from proto import inference_pb2 as pb

DUMP = """
from google.protobuf import descriptor_pb2
from tritonclient.grpc import service_pb2
fd = descriptor_pb2.FileDescriptorProto()
service_pb2.DESCRIPTOR.CopyToProto(fd)
print(fd.SerializeToString().hex())
"""

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tritonclient") is None, reason="tritonclient not installed"
)


Fields = dict[str, tuple[int, int, int, str]]


def _messages(file_proto: descriptor_pb2.FileDescriptorProto) -> dict[str, Fields]:
    """{"Outer.Inner": {field: (number, type, label, type_name)}} for all messages."""
    out: dict[str, Fields] = {}

    def walk(msg: descriptor_pb2.DescriptorProto, prefix: str) -> None:
        name = prefix + msg.name
        out[name] = {f.name: (f.number, f.type, f.label, f.type_name) for f in msg.field}
        for nested in msg.nested_type:
            walk(nested, name + ".")

    for msg in file_proto.message_type:
        walk(msg, "")
    return out


def _methods(
    file_proto: descriptor_pb2.FileDescriptorProto,
) -> dict[str, tuple[str, str, bool, bool]]:
    return {
        m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
        for m in file_proto.service[0].method
    }


@pytest.fixture(scope="module")
def protos():
    done = subprocess.run([sys.executable, "-c", DUMP], capture_output=True, text=True, check=True)
    triton = descriptor_pb2.FileDescriptorProto.FromString(bytes.fromhex(done.stdout.strip()))
    ours = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(ours)
    return ours, triton


def test_same_package_and_service(protos):
    ours, triton = protos
    assert ours.package == triton.package == "inference"
    assert ours.service[0].name == triton.service[0].name == "GRPCInferenceService"


def test_every_message_matches_triton(protos):
    ours, triton = protos
    theirs = _messages(triton)
    for name, fields in _messages(ours).items():
        assert theirs.get(name) == fields, f"message {name} differs from Triton's"


def test_every_rpc_matches_triton(protos):
    ours, triton = protos
    theirs = _methods(triton)
    mine = _methods(ours)
    assert set(mine) == {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelStreamInfer",
    }
    for name, signature in mine.items():
        assert theirs[name] == signature, f"rpc {name} differs from Triton's"


def test_stream_infer_is_bidirectional():
    method = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name[
        "ModelStreamInfer"
    ]
    assert method.client_streaming and method.server_streaming
