from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from r1.cli import render
from r1.cli.main import _default_name


@pytest.mark.parametrize(
    "size, text",
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (98_362_432, "98 MB"), (253_113_024, "253 MB"),
     (4_683_073_184, "4.7 GB"), (42_000_000_000, "42 GB"), (3 * 10**15, "3000 TB")],
)
def test_human_size(size: int, text: str) -> None:
    assert render.human_size(size) == text


def test_human_age() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    ago = lambda **kw: (now - timedelta(**kw)).isoformat()  # noqa: E731
    assert render.human_age(ago(seconds=2), now) == "just now"
    assert render.human_age(ago(seconds=30), now) == "30 seconds ago"
    assert render.human_age(ago(minutes=1), now) == "1 minute ago"
    assert render.human_age(ago(hours=5), now) == "5 hours ago"
    assert render.human_age(ago(days=9), now) == "1 week ago"
    assert render.human_age(ago(days=400), now) == "1 year ago"
    assert render.human_age("2026-11-23T11:00:00Z", now) == "1 hour ago"
    assert render.human_age("not a time", now) == "not a time"


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
    assert _default_name(Path(path)) == name
