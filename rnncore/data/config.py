"""``DataConfig``: which corpus to train on and how to split it (a JSON-safe dataclass)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from rnncore.configs import DictConfig
from rnncore.data.corpus import CorpusError


@dataclass
class DataConfig(DictConfig):
    """What to train on. ``corpus`` is ``"tang"`` (bundled), ``"quantangshi"`` (the full Tang
    corpus, split per form: ``split_by_form``), ``"quansongshi"`` (the same tarball's Song
    poems) or a file/directory/archive path.

    ``val_fraction`` of the poems (chosen by ``seed``) are held out; ``max_poems`` keeps only
    the first N valid poems (before the split) for quick runs. ``form_tokens`` starts every
    poem with its form's start token (``Vocab.start_id``), so one model writes every form
    and is told which. ``extra_train`` names a second corpus (``"quansongshi"``, a path)
    whose poems join the training poems only, under ``split.extra_training``'s rule: the
    four regulated forms, written in the main corpus's characters (the vocabulary stays the
    main corpus's), no near-duplicate of a held-out poem. Bad values raise ``CorpusError``.
    """

    config_error = CorpusError

    corpus: str = "tang"
    simplified: bool = False
    val_fraction: float = 0.05
    seed: int = 0
    max_poems: int | None = None
    form_tokens: bool = False
    extra_train: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.corpus, (str, os.PathLike)) or not str(self.corpus).strip():
            raise CorpusError("corpus must be 'tang', 'quantangshi' or a path to a corpus file")
        self.corpus = str(self.corpus)
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise CorpusError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not isinstance(self.form_tokens, bool):
            raise CorpusError(f"form_tokens must be true or false, got {self.form_tokens!r}")
        if self.extra_train is not None:
            if not isinstance(self.extra_train, (str, os.PathLike)) or not str(self.extra_train).strip():
                raise CorpusError("extra_train must be a corpus name or path, or left out")
            self.extra_train = str(self.extra_train)
        if self.max_poems is not None and int(self.max_poems) < 1:
            raise CorpusError(f"max_poems must be at least 1, got {self.max_poems}")
