"""Named corpora: two that ship with Python and the open data sets in ``../shared/data``.

``pydoc`` (the Python reference's help topics, English prose) and ``stdlib`` (the standard library's
own source) work on every machine. ``shakespeare`` and ``poems`` read ``../shared/data`` beside the
project, or the folder that ``LUOXIA_DATA_DIR`` names. Anything else is a path to the user's files.
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from luoxia.data.readers import Document, read_documents
from luoxia.errors import DataError

DATA_DIR_ENV = "LUOXIA_DATA_DIR"


def shared_data_dir() -> Path | None:
    """``$LUOXIA_DATA_DIR``, else the first ``shared/data`` beside the working directory or the checkout."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    checkout = Path(__file__).resolve().parents[2]
    for base in (Path.cwd(), checkout):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


SHARED_PREFIX = "shared:"


def shared_path(relative_path: str) -> Path:
    """A file under ``shared/data`` (or ``$LUOXIA_DATA_DIR``), or an error saying where it was sought."""
    base = shared_data_dir()
    path = base / relative_path if base else None
    if path is None or not path.exists():
        raise DataError(
            f"{relative_path} not found under shared/data (looked in {base or '../shared/data'}); "
            f"set {DATA_DIR_ENV} to the folder that holds it, or pass the file's own path instead"
        )
    return path


def resolve_data_path(path: str | Path) -> Path:
    """``shared:fin_sentiment_en/sent_train.csv`` → that file under shared/data; other paths as given."""
    text = str(path)
    return shared_path(text[len(SHARED_PREFIX):]) if text.startswith(SHARED_PREFIX) else Path(path)


def pydoc_documents() -> Iterator[Document]:
    """Each help topic of ``pydoc_data.topics`` as one document, in sorted order."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield Document(topics[name], f"pydoc_data.topics[{name!r}]")


def stdlib_documents(limit: int = 200) -> Iterator[Document]:
    """The first ``limit`` top-level modules of the standard library, one document each."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))[:limit]
    yield from read_documents(files)


@dataclass(frozen=True)
class SharedCorpus:
    """A data set under ``shared/data``: the file, its format and the field that holds the text."""

    relative_path: str
    format: str = "auto"
    field: str | None = None

    def documents(self, with_titles: bool = False) -> Iterator[Document]:
        return read_documents([shared_path(self.relative_path)], self.format, self.field, with_titles=with_titles)


SHARED_CORPORA = {
    "shakespeare": SharedCorpus("tinyshakespeare/input.txt", "text"),
    "poems": SharedCorpus("chinese_poetry_tang/tang_poems_simp.jsonl.gz", "jsonl", "paragraphs"),
    "poems_trad": SharedCorpus("chinese_poetry_tang/tang_poems_trad.jsonl.gz", "jsonl", "paragraphs"),
}
BUILTIN_CORPORA = {"pydoc": pydoc_documents, "stdlib": stdlib_documents}
CORPUS_NAMES = sorted([*BUILTIN_CORPORA, *SHARED_CORPORA])


def corpus_documents(corpus: str | list[str], fmt: str = "auto", field: str | None = None,
                     unit: str = "file", with_titles: bool = False) -> Iterator[Document]:
    """Documents of a named corpus, or of the files and directories given as paths; ``with_titles``:
    JSONL records' titles kept as each text's first line (`luoxia.data.readers.titled_text`)."""
    if isinstance(corpus, str) and corpus in BUILTIN_CORPORA:
        return BUILTIN_CORPORA[corpus]()
    if isinstance(corpus, str) and corpus in SHARED_CORPORA:
        return SHARED_CORPORA[corpus].documents(with_titles)
    paths = [corpus] if isinstance(corpus, str) else list(corpus)
    for path in paths:
        if not Path(path).exists() and "/" not in path and "." not in path:
            raise DataError(f"'{path}' is neither a file nor a corpus name; corpus names: {', '.join(CORPUS_NAMES)}")
    return read_documents(paths, fmt, field, unit, with_titles)  # type: ignore[arg-type]
