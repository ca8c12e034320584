"""Unit tests of the runner's pieces that need no model: stop strings, options, templates, durations."""

from __future__ import annotations

import pytest

from r1.daemon.backends import BackendError
from r1.daemon.config import ConfigError, parse_duration
from r1.daemon.errors import BadRequest
from r1.daemon.options.check import check_options, split_options
from r1.daemon.runner.protocol import decode, encode
from r1.daemon.runner.stops import StopMatcher
from r1.daemon.templates import template

pytestmark = pytest.mark.unit  # the fast lane (docs/development.md)


def feed_all(matcher: StopMatcher, pieces: list[str]) -> str:
    out = "".join(matcher.feed(p) for p in pieces if not matcher.stopped)
    return out + matcher.finish()


@pytest.mark.parametrize("cut", range(1, 12))
def test_a_stop_string_split_anywhere_is_found(cut: int) -> None:
    text = "Hello <end_of_turn> and more"
    matcher = StopMatcher(["<end_of_turn>"])
    assert feed_all(matcher, [text[:cut], text[cut:]]) == "Hello "
    assert matcher.stopped


def test_text_that_only_looks_like_a_stop_is_released() -> None:
    matcher = StopMatcher(["</s>"])
    assert matcher.feed("a </") == "a "  # held: may become </s>
    assert matcher.feed("b>") == "</b>"
    assert matcher.feed(" end </") == " end "
    assert matcher.finish() == "</"  # the stream ended: nothing is lost
    assert not matcher.stopped


def test_the_earliest_of_several_stops_wins_and_no_stops_pass_through() -> None:
    assert feed_all(StopMatcher(["BB", "A"]), ["xxBB yy A"]) == "xx"
    assert feed_all(StopMatcher([]), ["any", " text"]) == "any text"


def test_options_are_typed_and_split_into_load_and_sampling() -> None:
    checked = check_options({"num_ctx": 2048.0, "temperature": 1, "stop": "\n", "mirostat": 2, "bogus": 1})
    assert checked == {"num_ctx": 2048, "temperature": 1.0, "stop": ["\n"]}
    load, sampling = split_options(checked, context_length=8192)
    assert load == {"num_ctx": 2048} and sampling == {"temperature": 1.0, "stop": ["\n"]}
    assert split_options({}, context_length=512)[0] == {"num_ctx": 512}  # a short model keeps its own
    assert split_options({}, context_length=None)[0] == {"num_ctx": 4096}


@pytest.mark.parametrize("options, word", [
    ({"temperature": "hot"}, "temperature"),
    ({"num_ctx": 1.5}, "num_ctx"),
    ({"use_mmap": 1}, "use_mmap"),
    ({"stop": [1]}, "stop"),
    ([], "options"),
])
def test_wrong_option_types_are_refused_by_name(options: object, word: str) -> None:
    with pytest.raises(BadRequest, match=word):
        check_options(options)


def test_templates_render_messages_with_bos_tools_and_thinking_switch() -> None:
    source = ("{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
              "{% if tools %}<tools>{{ tools | tojson }}</tools>{% endif %}"
              "{% if enable_thinking is defined and not enable_thinking %}/no_think{% endif %}"
              "{% if add_generation_prompt %}[assistant]{% endif %}")
    messages = [{"role": "user", "content": "hi"}]
    assert template.render(source, messages, bos_token="<s>", eos_token="</s>") == "<s>[user]hi[assistant]"
    rendered = template.render(source, messages, bos_token="", eos_token="", tools=[{"name": "f"}], think=False)
    assert rendered == '[user]hi<tools>[{"name": "f"}]</tools>/no_think[assistant]'


def test_a_template_that_raises_is_a_backend_error() -> None:
    with pytest.raises(BackendError, match="only user"):
        template.render("{{ raise_exception('only user') }}", [], bos_token="", eos_token="")


def test_frames_round_trip_and_reject_strangers() -> None:
    frame = {"id": 3, "t": "héllo\n"}
    assert encode(frame).endswith(b"\n") and decode(encode(frame)) == frame
    with pytest.raises(ValueError):
        decode(b'{"t": "no id"}')


@pytest.mark.parametrize("text, seconds", [("300", 300), ("5m", 300), ("1h30m", 5400), ("2.5s", 2.5),
                                           ("500ms", 0.5), ("-1", -1), ("-5m", -300), ("0", 0)])
def test_durations_read_like_ollamas_keep_alive(text: str, seconds: float) -> None:
    assert parse_duration(text, "R1_KEEP_ALIVE") == seconds


def test_a_bad_duration_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="R1_KEEP_ALIVE"):
        parse_duration("soon", "R1_KEEP_ALIVE")
