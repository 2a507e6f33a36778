"""The checked-in gRPC code matches what protoc generates from reward.proto now."""

from vlmrl.reward_workers.proto import generate


def test_generated_code_is_up_to_date():
    assert generate.stale_files() == [], "run: python -m vlmrl.reward_workers.proto.generate"


def test_generated_modules_import_as_package():
    from vlmrl.reward_workers.proto import reward_pb2, reward_pb2_grpc

    req = reward_pb2.ScoreRequest(request_id="r1", task="t")
    assert reward_pb2.ScoreRequest.FromString(req.SerializeToString()).request_id == "r1"
    assert hasattr(reward_pb2_grpc, "RewardServiceStub")
