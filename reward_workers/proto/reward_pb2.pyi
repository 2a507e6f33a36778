from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RAW: _ClassVar[Encoding]
    PNG: _ClassVar[Encoding]
    JPEG: _ClassVar[Encoding]
RAW: Encoding
PNG: Encoding
JPEG: Encoding

class Frame(_message.Message):
    __slots__ = ("shape", "data", "encoding", "dtype")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    encoding: Encoding
    dtype: str
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., dtype: _Optional[str] = ...) -> None: ...

class FramePair(_message.Message):
    __slots__ = ("first", "second")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    SECOND_FIELD_NUMBER: _ClassVar[int]
    first: Frame
    second: Frame
    def __init__(self, first: _Optional[_Union[Frame, _Mapping]] = ..., second: _Optional[_Union[Frame, _Mapping]] = ...) -> None: ...

class FrameWindow(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[Frame]
    def __init__(self, frames: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("frame", "pair", "window")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    PAIR_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    frame: Frame
    pair: FramePair
    window: FrameWindow
    def __init__(self, frame: _Optional[_Union[Frame, _Mapping]] = ..., pair: _Optional[_Union[FramePair, _Mapping]] = ..., window: _Optional[_Union[FrameWindow, _Mapping]] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("request_id", "task", "items", "scorer")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    task: str
    items: _containers.RepeatedCompositeFieldContainer[Item]
    scorer: str
    def __init__(self, request_id: _Optional[str] = ..., task: _Optional[str] = ..., items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., scorer: _Optional[str] = ...) -> None: ...

class ItemReward(_message.Message):
    __slots__ = ("reward", "components", "label", "cached", "model_version")
    class ComponentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REWARD_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    reward: float
    components: _containers.ScalarMap[str, float]
    label: str
    cached: bool
    model_version: str
    def __init__(self, reward: _Optional[float] = ..., components: _Optional[_Mapping[str, float]] = ..., label: _Optional[str] = ..., cached: _Optional[bool] = ..., model_version: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("request_id", "rewards", "scorer", "model_version", "worker_id", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    rewards: _containers.RepeatedCompositeFieldContainer[ItemReward]
    scorer: str
    model_version: str
    worker_id: str
    error: Error
    def __init__(self, request_id: _Optional[str] = ..., rewards: _Optional[_Iterable[_Union[ItemReward, _Mapping]]] = ..., scorer: _Optional[str] = ..., model_version: _Optional[str] = ..., worker_id: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BatchingStats(_message.Message):
    __slots__ = ("requests", "items", "batches", "mean_batch_size", "queue_depth", "rejected_requests", "invalid_requests", "cache_hits", "cache_misses", "items_per_second", "mean_scorer_ms", "mean_latency_ms", "in_flight_requests", "max_batch", "max_wait_ms", "failed_requests")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    MEAN_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    REJECTED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    INVALID_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    CACHE_MISSES_FIELD_NUMBER: _ClassVar[int]
    ITEMS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    MEAN_SCORER_MS_FIELD_NUMBER: _ClassVar[int]
    MEAN_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    FAILED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: int
    items: int
    batches: int
    mean_batch_size: float
    queue_depth: int
    rejected_requests: int
    invalid_requests: int
    cache_hits: int
    cache_misses: int
    items_per_second: float
    mean_scorer_ms: float
    mean_latency_ms: float
    in_flight_requests: int
    max_batch: int
    max_wait_ms: float
    failed_requests: int
    def __init__(self, requests: _Optional[int] = ..., items: _Optional[int] = ..., batches: _Optional[int] = ..., mean_batch_size: _Optional[float] = ..., queue_depth: _Optional[int] = ..., rejected_requests: _Optional[int] = ..., invalid_requests: _Optional[int] = ..., cache_hits: _Optional[int] = ..., cache_misses: _Optional[int] = ..., items_per_second: _Optional[float] = ..., mean_scorer_ms: _Optional[float] = ..., mean_latency_ms: _Optional[float] = ..., in_flight_requests: _Optional[int] = ..., max_batch: _Optional[int] = ..., max_wait_ms: _Optional[float] = ..., failed_requests: _Optional[int] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("worker_id", "scorer", "item_kind", "model_id", "model_version", "stats")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    ITEM_KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    scorer: str
    item_kind: str
    model_id: str
    model_version: str
    stats: BatchingStats
    def __init__(self, worker_id: _Optional[str] = ..., scorer: _Optional[str] = ..., item_kind: _Optional[str] = ..., model_id: _Optional[str] = ..., model_version: _Optional[str] = ..., stats: _Optional[_Union[BatchingStats, _Mapping]] = ...) -> None: ...
