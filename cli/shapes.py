"""The daemon's answers as the CLI reads them: one TypedDict per route's JSON (daemon/api/ writes them).

For mypy only: no module imports this at run time, only under `if TYPE_CHECKING:` (with
`TYPE_CHECKING = False` of its own, since `typing` costs the CLI's start). Nothing checks an answer
against its shape: they say what the daemon sends, to be kept in step with daemon/api/. Each lists
the fields the CLI reads, not every field the daemon sends.
"""

from collections.abc import Generator
from typing import NotRequired, TypedDict, TypeVar

Event = TypeVar("Event")
Stream = Generator[Event, None, None]  # an NDJSON answer, one object an event; close() hangs up


class Details(TypedDict):
    format: str
    family: str
    parameter_size: str  # "" when unknown
    quantization_level: str  # "" when unknown


class RemoteOf(TypedDict):
    name: str  # the remote engine
    model: str  # the upstream model


class Tag(TypedDict):
    """A model of GET /api/tags."""

    name: str
    digest: str
    size: int
    modified_at: str
    details: Details
    capabilities: list[str]
    remote: NotRequired[RemoteOf]
    broken: NotRequired[list[str]]  # files another tool held that changed or went


class Tags(TypedDict):
    models: list[Tag]


class CatalogEntry(TypedDict):
    name: str
    repo: str
    tag: str | None  # None: r1 picks the quantization
    description: str
    installed: bool
    imported: NotRequired[bool]


class Catalog(TypedDict):
    models: list[CatalogEntry]


class KvCache(TypedDict):
    ram: int
    ram_cap: int
    disk: int
    disk_cap: int


class Loaded(TypedDict):
    """A model of GET /api/ps: loaded here, or (with `remote`) served by a remote engine."""

    name: str
    digest: str
    size: int
    size_vram: int
    expires_at: str | None
    context_length: int
    state: str  # loading, idle, busy, stopping
    kv_cache_type: NotRequired[str]
    slots: NotRequired[int]
    slots_busy: NotRequired[int]
    kv_cache: NotRequired[KvCache]
    extra_buffers: NotRequired[bool]
    remote: NotRequired[RemoteOf]
    requests: NotRequired[int]  # a remote model's requests in flight
    options: NotRequired[dict[str, object]]  # the load options its runner was started with


class Memory(TypedDict):
    used: int
    budget: int
    device_used: int


class Running(TypedDict):
    """GET /api/ps."""

    models: list[Loaded]
    memory: Memory
    waiting: int


class MemoryFit(TypedDict):
    """/api/show's `memory`: what loading the model takes at its default context."""

    estimate: int  # bytes, for all its slots
    num_ctx: int
    slots: int
    kv_cache_type: str
    budget: int
    fits: bool
    host: int
    device: int  # on the GPU: left out of the budget
    kv_ram: int


class Source(TypedDict):
    kind: str  # the tool whose file it is
    path: str


class ModelFile(TypedDict):
    """A file of /api/show's `files`."""

    path: str
    digest: str
    size: int
    present: bool
    source: NotRequired[Source]  # a file another tool holds
    broken: NotRequired[str]  # "path: what changed"
    kind: NotRequired[str]  # projector or draft


class PerMillion(TypedDict):
    input: float  # US dollars per million prompt tokens
    output: float


class RemoteModel(TypedDict):
    """/api/show's `remote`: which engine answers, as which model, at what price."""

    name: str
    model: str
    context_length: int | None
    price: PerMillion | None


class ModelInfo(TypedDict):
    """POST /api/show."""

    license: str
    modelfile: str
    parameters: str  # `name value` lines
    template: str
    system: str
    details: Details
    model_info: dict[str, object]  # GGUF-style keys: general.architecture, ARCH.context_length...
    capabilities: list[str]
    digest: str
    size: int
    memory: NotRequired[MemoryFit]  # a stored model's
    path: NotRequired[str]
    files: NotRequired[list[ModelFile]]
    remote: NotRequired[RemoteModel]  # a remote model's


class DaemonFacts(TypedDict):
    """GET /api/daemon: the daemon's process, and the environment it started with."""

    pid: int
    uid: int
    r1_version: str
    started_at: float
    service: str | None  # systemd or launchd when `r1 service` runs it
    environment: dict[str, str]


class Remote(TypedDict):
    name: str
    dialect: str
    urls: list[str]
    key: str  # where the key comes from, never the key


class Remotes(TypedDict):
    remotes: list[Remote]


class RemoteRemoved(TypedDict):
    models_left: list[str]  # models that still name the remote


class UpstreamModel(TypedDict):
    id: str
    context_length: NotRequired[int]


class UpstreamModels(TypedDict):
    models: list[UpstreamModel]


class Price(TypedDict):
    upstream: str
    input: float
    output: float


class UsageRow(TypedDict):
    key: str | None
    requests: int
    prompt_tokens: int
    output_tokens: int
    thinking_tokens: int | None
    tokens_per_s: float | None
    cost: float | None
    errors: int


class Usage(TypedDict):
    """GET /api/usage."""

    logging: bool
    usage: list[UsageRow]


class LogRow(TypedDict):
    """A request of GET /api/log."""

    time: float
    client_kind: str  # unix or tcp
    client: str | None
    client_uid: int | None
    client_pid: int | None
    method: str
    route: str
    model: str | None
    status: int
    prompt_tokens: int | None
    output_tokens: int | None
    first_token_s: float | None
    tokens_per_s: float | None
    duration_s: float


class Log(TypedDict):
    requests: list[LogRow]


class Embeddings(TypedDict):
    embeddings: list[list[float]]


class Listener(TypedDict):
    """POST /api/tcp."""

    address: str  # HOST:PORT


class ImportedFile(TypedDict):
    path: str
    how: str  # reflinked, linked, copied or stored


class ToolModel(TypedDict):
    """A model another tool keeps, as `r1 import --from TOOL --dry-run` lists it."""

    name: str
    format: str
    size: int
    notes: list[str]
    problem: NotRequired[str]


class ToolImported(TypedDict):
    name: str
    digest: str
    notes: list[str]


class ProgressEvent(TypedDict, total=False):
    """An event of POST /api/pull, /api/import or /api/create: a status, a file's progress (with
    `total`), or the last one (status "success") with what came."""

    status: str
    file: str
    completed: int
    total: int
    model: str
    digest: str
    size: int
    note: str
    up_to_date: bool
    tag: str
    repo: str
    downloaded: int
    seconds: float
    files: list[ImportedFile]  # an imported file's
    models: list[ToolModel]  # --from TOOL --dry-run
    imported: list[ToolImported]  # --from TOOL
    trusted: bool
    bytes_linked: int
    bytes_copied: int


class Message(TypedDict, total=False):
    role: str
    content: str
    thinking: str


class Chunk(TypedDict, total=False):
    """An event of POST /api/chat (`message`) or /api/generate (`response`); the last has `done` and the counts."""

    message: Message
    response: str
    thinking: str
    done: bool
    thinking_unfinished: bool
    total_duration: int
    load_duration: int
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    tokens_counted_by_r1: bool
    cost: float | None
