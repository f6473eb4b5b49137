"""The loaded models of a run, as one record the tasks take."""

from __future__ import annotations

from dataclasses import dataclass

from avbridge.models.binders.base import Binder
from avbridge.models.captioners import Captioner
from avbridge.models.generators.base import Generator


@dataclass
class Components:
    """Everything the tasks need; ``avbridge.loading.load_components`` builds it.

    ``visual_captioner`` captions videos/images (vanilla V2A/I2A prompts);
    ``audio_captioner`` captions audio (vanilla A2V/A2I prompts).
    """

    binder: Binder
    audio: Generator | None = None
    video: Generator | None = None
    image: Generator | None = None
    audio_captioner: Captioner | None = None
    visual_captioner: Captioner | None = None
