from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from r1.cli import render
from r1.cli.fetch import default_name


@pytest.mark.unit
@pytest.mark.parametrize(
    "size, text",
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (98_362_432, "98 MB"), (253_113_024, "253 MB"),
     (4_683_073_184, "4.7 GB"), (42_000_000_000, "42 GB"), (3 * 10**15, "3000 TB")],
)
def test_human_size(size: int, text: str) -> None:
    assert render.human_size(size) == text


@pytest.mark.unit
def test_human_age() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def ago(**delta: float) -> str:
        return (now - timedelta(**delta)).isoformat()

    assert render.human_age(ago(seconds=2), now) == "just now"
    assert render.human_age(ago(seconds=30), now) == "30 seconds ago"
    assert render.human_age(ago(minutes=1), now) == "1 minute ago"
    assert render.human_age(ago(hours=5), now) == "5 hours ago"
    assert render.human_age(ago(days=9), now) == "1 week ago"
    assert render.human_age(ago(days=400), now) == "1 year ago"
    assert render.human_age("2026-11-23T11:00:00Z", now) == "1 hour ago"
    assert render.human_age("not a time", now) == "not a time"


@pytest.mark.unit
def test_table_aligns_columns() -> None:
    text = render.table(("NAME", "SIZE"), [("a-long-name", "1 B"), ("b", "22 MB")])
    assert text.splitlines() == ["NAME          SIZE", "a-long-name   1 B", "b             22 MB"]


@pytest.mark.parametrize(
    "path, name",
    [("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct.q4_1"),
     ("DeepSeek-R1-Distill-Qwen-7B-Q4_K_M-00001-of-00002.gguf", "deepseek-r1-distill-qwen-7b-q4_k_m"),
     ("My Model (v2).gguf", "my-model-v2"), ("mlx-folder", "mlx-folder")],
)
def test_default_import_name(path: str, name: str) -> None:
    assert default_name(Path(path)) == name


@pytest.mark.unit
def test_progress_line_has_bar_bytes_speed_and_eta() -> None:
    line = render.progress_line("pulling a5fd3b62230a", 105_000_000, 253_113_024, 61e6)
    assert line == "pulling a5fd3b62230a   41% [#########...............]  105 MB/253 MB  61 MB/s  ETA 2s"
    assert render.progress_line("done", 10, 10, 5.0).endswith("10 B/10 B  5 B/s")
    assert render.human_duration(3725) == "1h02m" and render.human_duration(75) == "1m15s"


@pytest.mark.unit
def test_progress_draws_one_line_per_file_on_a_terminal() -> None:
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    progress = render.Progress(out)
    progress.update("pulling aaa", 0, 100)
    progress.update("pulling aaa", 100, 100)
    progress.update("pulling bbb", 50, 50)
    progress.finish()
    lines = out.getvalue().split("\n")
    assert len(lines) == 3 and lines[-1] == ""
    assert lines[0].rsplit("\r", 1)[-1].startswith("pulling aaa  100% [") and lines[1].lstrip("\r").startswith("pulling bbb")
    quiet = io.StringIO()
    render.Progress(quiet).update("x", 1, 2)
    assert quiet.getvalue() == "", "nothing is drawn when stderr is not a terminal"


@pytest.mark.unit
def test_until_reads_like_ollama_ps() -> None:
    now = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
    assert render.human_until("2026-11-23T10:04:30.123Z", now) == "4 minutes from now"
    assert render.human_until("2026-11-23T10:00:01Z", now) == "1 second from now"
    assert render.human_until("2026-11-23T09:59:59Z", now) == "Less than a second"
    assert render.human_until("2318-01-01T00:00:00Z", now) == "Forever"
    assert render.human_until("soon", now) == "soon"
