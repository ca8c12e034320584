"""Images named in a prompt, as `ollama run` takes them: a path to a PNG, JPEG, GIF or BMP file in the text
of a prompt to a vision model is read and sent with it, and left out of the text.

A path is a word of the prompt (quoted, or with its spaces escaped as `\\ `) that names an existing file
with an image's extension; words that do not are left as they are.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

from .render import say

EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
# A word that may be a path: single- or double-quoted, or unquoted with backslash-escaped spaces.
_WORD = re.compile(r"""'([^']+)'|"([^"]+)"|((?:\\ |\S)+)""")
MAX_BYTES = 20 * 1024 * 1024  # the daemon's limit for one image (daemon/api/fields.py)


def take_images(prompt: str) -> tuple[str, list[str]]:
    """The prompt without the image files it names, and those files' bytes in base64, in order."""
    images: list[str] = []
    kept: list[str] = []
    last = 0
    for match in _WORD.finditer(prompt):
        word = next(group for group in match.groups() if group is not None).replace("\\ ", " ")
        path = Path(os.path.expanduser(word))
        if path.suffix.lower() not in EXTENSIONS or not path.is_file():
            continue
        if path.stat().st_size > MAX_BYTES:
            say(f"{word} is larger than the 20 MiB an image may be; it was left in the prompt as text")
            continue
        images.append(base64.b64encode(path.read_bytes()).decode())
        say(f"Added image '{word}'")
        kept.append(prompt[last:match.start()])
        last = match.end()
    kept.append(prompt[last:])
    return "".join(kept).strip(), images


def user_message(text: str, vision: bool) -> dict[str, object]:
    """A chat's user message for `text`, with the images it names when the model can see them."""
    if not vision:
        return {"role": "user", "content": text}
    text, images = take_images(text)
    return {"role": "user", "content": text, **({"images": images} if images else {})}
