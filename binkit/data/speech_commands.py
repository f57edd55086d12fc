"""Google Speech Commands (V1 / V2): scan a tree on disk, split it, and build a labelled task.

Nothing here decodes audio or imports torch: the result is a :class:`binkit.data.items.Task`, a
label order plus, per split (``"train"``, ``"val"``, ``"test"``), a list of
:class:`~binkit.data.items.ClipRef`. The decode cache reads the clips later, through
:mod:`binkit.runtime.audio` (16 kHz mono, padded or trimmed to 1 s).

Layout (Warden, arXiv 1804.03209; ``shared/reference/speech_commands.md`` sections 1-3)::

    speech_commands_v0.0X/
      _background_noise_/*.wav       noise for augmentation and TF-style silence; never a word
      <word>/<speaker>_nohash_<n>.wav
      validation_list.txt, testing_list.txt

:func:`scan` accepts that folder, a folder holding it, or torchaudio's
``root/SpeechCommands/speech_commands_v0.0X/``. Splits come from the two list files when they are
present; otherwise from :func:`which_set`, Warden's hash rule (the lists are that rule's output),
which keeps every speaker in one split.

Label orders (fixed; stored with every model):

- 12-class, protocol ``"tf"`` (TF tutorial ``input_data.py``): :data:`LABELS_TF_12` =
  ``_silence_, _unknown_, yes, no, up, down, left, right, on, off, stop, go``. Per split, with
  ``n`` keyword clips: ``ceil(0.1 n)`` unknown clips sampled without replacement from that
  split's non-keyword clips, and ``ceil(0.1 n)`` silence entries rendered from background noise.
- 12-class, protocol ``"bifsmn"`` (the official BiFSMN code, bifsmn.md section 8):
  :data:`LABELS_BIFSMN_12` = ``_unknown_, _silence_, yes, ..., go``. Every non-keyword clip is
  unknown; ``int(0.1 len(split))`` all-zero silence entries are added to each split.
- 35-class: :data:`V2_WORDS` in the order of speech_commands.md section 1, which is also the label
  order of the Hugging Face ``speech_commands`` card: the 10 keywords, the digits zero-nine, the 10
  auxiliary words, then backward, forward, follow, learn, visual. No silence, no unknown. V1 has
  only 30 words (:data:`V1_WORDS`, the first 30), so the 35-class task refuses a V1 tree.

With ``test_archive`` the test split is the official 12-class test archive
(``speech_commands_test_set_v0.0X``: folders for the 10 keywords, ``_silence_`` and
``_unknown_``; its ``_silence_`` clips are real files), as BC-ResNet and TFDS use it; the tree's
own ``testing_list.txt`` clips are then left out. Always report the protocol with the accuracy.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from binkit.data.items import ClipRef, Task
from binkit.errors import AudioError, DatasetError

__all__ = [
    "KEYWORDS_12",
    "DIGITS",
    "AUXILIARY_WORDS",
    "V2_EXTRA_WORDS",
    "V1_WORDS",
    "V2_WORDS",
    "SILENCE",
    "UNKNOWN",
    "NOISE_FOLDER",
    "LABELS_TF_12",
    "LABELS_BIFSMN_12",
    "SPLIT_NAMES",
    "which_set",
    "SpeechCommandsTree",
    "scan",
    "split_files",
    "scan_test_archive",
    "check_audio_file",
    "build_task",
]

KEYWORDS_12: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
DIGITS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
AUXILIARY_WORDS: tuple[str, ...] = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow")
V2_EXTRA_WORDS: tuple[str, ...] = ("backward", "forward", "follow", "learn", "visual")
V1_WORDS: tuple[str, ...] = KEYWORDS_12 + DIGITS + AUXILIARY_WORDS  # 30 words
V2_WORDS: tuple[str, ...] = V1_WORDS + V2_EXTRA_WORDS  # 35 words: the 35-class label order

SILENCE = "_silence_"
UNKNOWN = "_unknown_"
NOISE_FOLDER = "_background_noise_"
LABELS_TF_12: tuple[str, ...] = (SILENCE, UNKNOWN, *KEYWORDS_12)  # TF input_data.py: silence 0, unknown 1
LABELS_BIFSMN_12: tuple[str, ...] = (UNKNOWN, SILENCE, *KEYWORDS_12)  # BiFSMN code: unknown 0, silence 1

# binkit split name -> TF which_set name; also the order TF builds the partitions in.
SPLIT_NAMES: dict[str, str] = {"val": "validation", "test": "testing", "train": "training"}
_LIST_FILES = {"val": "validation_list.txt", "test": "testing_list.txt"}
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}  # sub-seed per split, so splits sample independently

# TF input_data.py: MAX_NUM_WAVS_PER_CLASS = 2**27 - 1 (~134M)
_MAX_NUM_WAVS_PER_CLASS = 2**27 - 1
_NOHASH = re.compile(r"_nohash_.*$")


def which_set(filename: str, validation_percentage: float = 10, testing_percentage: float = 10) -> str:
    """Warden's split rule, as TF ``speech_commands/input_data.py`` ``which_set``.

    The base name is cut at ``_nohash_`` (leaving the speaker id), hashed with SHA-1, taken mod
    ``2**27`` and scaled to a percentage ``p``: ``"validation"`` if ``p < validation_percentage``,
    ``"testing"`` if ``p < validation_percentage + testing_percentage``, else ``"training"``.
    Every clip of one speaker lands in the same split.
    """
    hash_name = _NOHASH.sub("", os.path.basename(filename))
    hashed = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage = (int(hashed, 16) % (_MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / _MAX_NUM_WAVS_PER_CLASS)
    if percentage < validation_percentage:
        return "validation"
    if percentage < testing_percentage + validation_percentage:
        return "testing"
    return "training"


@dataclass(frozen=True)
class SpeechCommandsTree:
    """What :func:`scan` found on disk.

    Attributes:
        root: the dataset folder itself (absolute), the one holding the word folders.
        version: ``"v2"`` iff all five V2-only words (:data:`V2_EXTRA_WORDS`) have clips, else ``"v1"``.
        words: word folders holding at least one ``.wav``, sorted; never ``_background_noise_``.
        files: word -> sorted paths relative to ``root`` (``"yes/0a7c2a8d_nohash_0.wav"``).
        noise_files: ``.wav`` files in ``_background_noise_``, relative to ``root``, sorted.
        has_noise_folder: whether ``_background_noise_`` exists (even if empty).
        has_lists: whether both ``validation_list.txt`` and ``testing_list.txt`` exist.
    """

    root: Path
    version: Literal["v1", "v2"]
    words: tuple[str, ...]
    files: dict[str, tuple[str, ...]]
    noise_files: tuple[str, ...]
    has_noise_folder: bool
    has_lists: bool

    @property
    def num_files(self) -> int:
        """Number of word clips (noise files not counted)."""
        return sum(len(v) for v in self.files.values())

    def path(self, relpath: str) -> str:
        """Absolute path of a file given relative to :attr:`root`."""
        return os.path.join(str(self.root), *relpath.split("/"))


def _is_wav(name: str) -> bool:
    return name.lower().endswith(".wav") and not name.startswith(".")


def _wavs_in(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if _is_wav(e.name) and e.is_file())
    except OSError:
        return []


def _word_dirs(folder: Path) -> dict[str, list[str]]:
    """Word folder name -> wav names, for sub-folders not starting with ``_`` or ``.``."""
    out: dict[str, list[str]] = {}
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if e.is_dir() and not e.name.startswith(("_", "."))]
    except OSError:
        return out
    for e in entries:
        wavs = _wavs_in(Path(e.path))
        if wavs:
            out[e.name] = wavs
    return out


def _looks_like_tree(folder: Path) -> bool:
    return bool(_word_dirs(folder)) or any((folder / f).is_file() for f in _LIST_FILES.values())


def _resolve_root(root: Path) -> Path:
    """The dataset folder: ``root`` itself, or one ``speech_commands_v0.0X`` below it."""
    if _looks_like_tree(root):
        return root
    candidates = sorted(p for pattern in ("speech_commands_v0.0*", "SpeechCommands/speech_commands_v0.0*")
                        for p in root.glob(pattern) if p.is_dir())
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        raise DatasetError(f"{root} holds several Speech Commands trees "
                           f"({', '.join(str(c) for c in candidates)}); pass one of them as the root")
    raise DatasetError(
        f"no Speech Commands tree at {root}: expected word folders (e.g. yes/) holding "
        "<speaker>_nohash_<n>.wav files, validation_list.txt/testing_list.txt, a speech_commands_v0.0X/ "
        "folder, or torchaudio's SpeechCommands/speech_commands_v0.0X/")


def scan(root: str | os.PathLike[str]) -> SpeechCommandsTree:
    """Find the word folders, clips, noise files and list files of a Speech Commands tree.

    ``root`` is the dataset folder itself, a folder holding exactly one ``speech_commands_v0.0X``,
    or torchaudio's root (``root/SpeechCommands/speech_commands_v0.0X``). Non-``.wav`` files and
    folders starting with ``_`` (other than ``_background_noise_``) or ``.`` are ignored.

    Raises:
        DatasetError: ``root`` is missing, not a folder, or holds no word clips.
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DatasetError(f"Speech Commands root {root} does not exist or is not a folder")
    root = _resolve_root(root)
    dirs = _word_dirs(root)
    if not dirs:
        raise DatasetError(f"no word clips under {root}: expected folders such as yes/ holding "
                           "<speaker>_nohash_<n>.wav files")
    words = tuple(sorted(dirs))
    files = {w: tuple(f"{w}/{name}" for name in dirs[w]) for w in words}
    noise_dir = root / NOISE_FOLDER
    noise = tuple(f"{NOISE_FOLDER}/{name}" for name in _wavs_in(noise_dir))
    version: Literal["v1", "v2"] = "v2" if all(w in dirs for w in V2_EXTRA_WORDS) else "v1"
    has_lists = all((root / f).is_file() for f in _LIST_FILES.values())
    return SpeechCommandsTree(root=root, version=version, words=words, files=files, noise_files=noise,
                              has_noise_folder=noise_dir.is_dir(), has_lists=has_lists)


def _read_list(tree: SpeechCommandsTree, split: str, known: set[str]) -> list[str]:
    list_path = tree.root / _LIST_FILES[split]
    out = []
    with open(list_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            rel = line.strip().replace("\\", "/")
            if not rel:
                continue
            rel = os.path.normpath(rel).replace(os.sep, "/")
            if rel not in known:
                where = f"{list_path}, line {lineno}"
                if os.path.isfile(tree.path(rel)):
                    raise DatasetError(f"{where} lists {rel}, which is not a word clip "
                                       f"(word clips are <word>/<name>.wav outside {NOISE_FOLDER}/)")
                raise DatasetError(f"{where} lists {rel}, but {tree.path(rel)} is missing on disk")
            out.append(rel)
    return out


def split_files(tree: SpeechCommandsTree) -> tuple[dict[str, list[str]], Literal["lists", "hash"]]:
    """Assign every word clip to ``"train"``, ``"val"`` or ``"test"``.

    From ``validation_list.txt`` / ``testing_list.txt`` when both exist (train = every other
    clip), else from :func:`which_set` with 10 % / 10 %. Returns ``(split -> sorted relative paths,
    source)`` with source ``"lists"`` or ``"hash"``.

    Raises:
        DatasetError: only one list file exists, a listed file is missing on disk or not a word
            clip, or a file is in both lists.
    """
    all_files = [rel for w in tree.words for rel in tree.files[w]]
    present = [f for f in _LIST_FILES.values() if (tree.root / f).is_file()]
    if len(present) == 1:
        missing = next(f for f in _LIST_FILES.values() if f not in present)
        raise DatasetError(f"{tree.root} has {present[0]} but not {missing}; provide both list files, "
                           "or neither (then the hash split of which_set is used)")
    if tree.has_lists:
        known = set(all_files)
        val, test = _read_list(tree, "val", known), _read_list(tree, "test", known)
        both = sorted(set(val) & set(test))
        if both:
            raise DatasetError(f"{len(both)} file(s) are in both {_LIST_FILES['val']} and "
                               f"{_LIST_FILES['test']} of {tree.root}, e.g. {both[0]}")
        held_out = set(val) | set(test)
        train = [f for f in all_files if f not in held_out]
        return {"train": sorted(train), "val": sorted(set(val)), "test": sorted(set(test))}, "lists"
    by_tf = {tf: name for name, tf in SPLIT_NAMES.items()}
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for rel in all_files:
        out[by_tf[which_set(rel)]].append(rel)
    return {k: sorted(v) for k, v in out.items()}, "hash"


def _archive_root(path: Path) -> Path:
    required = (*KEYWORDS_12, SILENCE, UNKNOWN)
    if any((path / d).is_dir() for d in required):
        return path
    candidates = sorted(p for p in path.glob("speech_commands_test_set_v0.0*") if p.is_dir())
    return candidates[0] if len(candidates) == 1 else path


def scan_test_archive(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Read the official 12-class test archive folder.

    ``path`` is the extracted ``speech_commands_test_set_v0.0X`` folder (or a folder holding exactly
    one). It must have a folder for each of the 10 keywords, ``_silence_`` and ``_unknown_``;
    file names may end in ``.wav.wav``. Returns class name -> sorted absolute paths.

    Raises:
        DatasetError: the folder is missing or lacks one of the 12 class folders.
    """
    path = Path(path).expanduser().absolute()
    if not path.is_dir():
        raise DatasetError(f"test archive folder {path} does not exist or is not a folder")
    path = _archive_root(path)
    required = (*KEYWORDS_12, SILENCE, UNKNOWN)
    missing = [d for d in required if not (path / d).is_dir()]
    if missing:
        raise DatasetError(f"{path} is not the 12-class test archive (speech_commands_test_set_v0.0X): "
                           f"missing folder(s) {', '.join(missing)}")
    return {d: [str(path / d / name) for name in _wavs_in(path / d)] for d in required}


def check_audio_file(path: str) -> str | None:
    """Cheap readability check (header only, via ``soundfile.info``): ``None`` if fine, else why not.

    Missing, unreadable, unrecognised and empty (0-frame) files fail.
    """
    if not os.path.isfile(path):
        return "no such file"
    try:
        info = sf.info(path)
    except Exception as exc:  # noqa: BLE001  (LibsndfileError, RuntimeError, TypeError: as runtime.audio)
        return f"cannot read audio header ({type(exc).__name__}: {exc})"
    if info.frames <= 0:
        return "file holds no samples"
    if info.samplerate <= 0 or info.channels <= 0:
        return f"bad header (sample rate {info.samplerate}, {info.channels} channels)"
    return None


class _Checker:
    """Applies ``on_error`` to every referenced file and remembers what was skipped."""

    def __init__(self, on_error: str) -> None:
        self.on_error = on_error
        self.skipped: list[dict[str, str]] = []

    def ok(self, path: str) -> bool:
        reason = check_audio_file(path)
        if reason is None:
            return True
        if self.on_error == "raise":
            raise AudioError(path, reason + " (pass on_error='skip' to drop such files and count them)")
        self.skipped.append({"path": path, "reason": reason})
        return False


def _count(fraction: Fraction, n: int, rounding: Literal["ceil", "floor"]) -> int:
    # exact rational arithmetic: float 0.1 * n can land just above an integer and ceil one too far
    value = fraction * n
    return math.ceil(value) if rounding == "ceil" else math.floor(value)


def _fraction(name: str, value: float) -> Fraction:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return Fraction(repr(float(value)))


def _rng(seed: int, split: str, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODE[split], stream]))


def _silence_refs(n: int, label: int, kind: Literal["zeros", "noise"], seed: int, split: str) -> list[ClipRef]:
    # distinct per-entry seeds: a random 62-bit base per (seed, split), then consecutive integers
    base = int(_rng(seed, split, 1).integers(0, 2**62))
    return [ClipRef(None, label, silence=kind, seed=base + i) for i in range(n)]


def build_task(
    tree: SpeechCommandsTree | str | os.PathLike[str],
    task: Literal["12", "35"] = "12",
    protocol: Literal["tf", "bifsmn"] = "tf",
    test_archive: str | os.PathLike[str] | None = None,
    seed: int = 59185,
    silence_fraction: float = 0.1,
    unknown_fraction: float = 0.1,
    on_error: Literal["raise", "skip"] = "raise",
) -> Task:
    """Build a labelled Speech Commands task (label order, refs per split, report info).

    Args:
        tree: a :class:`SpeechCommandsTree`, or a path given to :func:`scan`.
        task: ``"12"`` (10 keywords + silence + unknown) or ``"35"`` (all V2 words; V2 only).
        protocol: 12-class only. ``"tf"``: labels :data:`LABELS_TF_12`; per split
            ``ceil(unknown_fraction * n_keyword_clips)`` unknown clips sampled without replacement
            from the split's non-keyword clips, and ``ceil(silence_fraction * n_keyword_clips)``
            ``silence="noise"`` entries (needs ``_background_noise_``). ``"bifsmn"``: labels
            :data:`LABELS_BIFSMN_12`; every non-keyword clip is unknown, and
            ``int(silence_fraction * len(split))`` ``silence="zeros"`` entries are added
            (``unknown_fraction`` is not used). Ignored for ``task="35"``.
        test_archive: folder of the official 12-class test archive; its clips replace the test
            split (``_silence_`` files keep their path and get the silence label).
        seed: unknown sampling and silence seeds; each split uses its own sub-seed
            (59185 is TF's ``RANDOM_SEED``; TF's exact draw is not reproduced).
        silence_fraction: see ``protocol``.
        unknown_fraction: see ``protocol``.
        on_error: what to do with a referenced file that is missing, unreadable, corrupt or empty
            (checked with ``soundfile.info``, no decode): ``"raise"`` an :class:`AudioError` naming
            it, or ``"skip"`` it and list it in ``info["skipped"]``. For ``"tf"`` a skipped
            unknown candidate is replaced by the next one in the seeded order.

    Returns:
        A :class:`Task`; ``info`` holds version, task, protocol, seed, fractions, ``counts``
        (split -> label -> clips), ``files_scanned``, ``split_source`` (``"lists"`` / ``"hash"``),
        ``test_source``, ``unknown_words``, ``skipped`` and ``num_skipped``.

    Raises:
        DatasetError: 35 classes asked of a V1 tree, ``"tf"`` silence without background noise,
            a bad test archive or list file.
        AudioError: a bad file with ``on_error="raise"``.
        ValueError: an argument outside its allowed values.
    """
    task = str(task)  # type: ignore[assignment]
    if task not in ("12", "35"):
        raise ValueError(f"task must be '12' or '35', got {task!r}")
    if protocol not in ("tf", "bifsmn"):
        raise ValueError(f"protocol must be 'tf' or 'bifsmn', got {protocol!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    silence_frac = _fraction("silence_fraction", silence_fraction)
    unknown_frac = _fraction("unknown_fraction", unknown_fraction)
    if not isinstance(tree, SpeechCommandsTree):
        tree = scan(tree)

    if task == "35":
        if tree.version != "v2":
            missing = [w for w in V2_EXTRA_WORDS if w not in tree.files]
            raise DatasetError(
                f"the 35-class task needs Speech Commands V2; this tree is V1 (V1 has 30 words: missing "
                f"{', '.join(missing)}): {tree.root}")
        if test_archive is not None:
            raise DatasetError("the official test archive is 12-class; it cannot serve the 35-class task")
        labels = list(V2_WORDS)
    else:
        labels = list(LABELS_TF_12 if protocol == "tf" else LABELS_BIFSMN_12)
    index = {name: i for i, name in enumerate(labels)}

    noise_needed = task == "12" and protocol == "tf" and silence_frac > 0
    if noise_needed and not tree.noise_files:
        what = "has no .wav files" if tree.has_noise_folder else "is missing"
        raise DatasetError(
            f"{tree.root / NOISE_FOLDER} {what}: protocol 'tf' builds _silence_ from background noise "
            "(TF silently drops it; binkit does not). Add the noise files, use protocol 'bifsmn' "
            "(all-zero silence), or set silence_fraction=0")

    checker = _Checker(on_error)
    assigned, split_source = split_files(tree)
    splits: dict[str, list[ClipRef]] = {}
    archive = scan_test_archive(test_archive) if test_archive is not None else None
    word_of = {rel: rel.split("/", 1)[0] for w in tree.words for rel in tree.files[w]}
    keywords = set(KEYWORDS_12)

    for split in ("train", "val", "test"):
        if split == "test" and archive is not None:
            refs = [ClipRef(p, index[name]) for name, paths in archive.items() for p in paths if checker.ok(p)]
            splits[split] = refs
            continue
        rels = assigned[split]
        if task == "35":
            refs = [ClipRef(tree.path(r), index[word_of[r]]) for r in rels
                    if word_of[r] in index and checker.ok(tree.path(r))]
            splits[split] = refs
            continue
        keyword_refs = [ClipRef(tree.path(r), index[word_of[r]]) for r in rels
                        if word_of[r] in keywords and checker.ok(tree.path(r))]
        pool = [r for r in rels if word_of[r] not in keywords]
        if protocol == "tf":
            n_kw = len(keyword_refs)
            n_unknown = _count(unknown_frac, n_kw, "ceil")
            n_silence = _count(silence_frac, n_kw, "ceil")
            order = _rng(seed, split, 0).permutation(len(pool))
            unknown_refs: list[ClipRef] = []
            for i in order:
                if len(unknown_refs) == n_unknown:
                    break
                path = tree.path(pool[int(i)])
                if checker.ok(path):
                    unknown_refs.append(ClipRef(path, index[UNKNOWN]))
            unknown_refs.sort(key=lambda ref: ref.path or "")
            silence = _silence_refs(n_silence, index[SILENCE], "noise", seed, split)
        else:
            unknown_refs = [ClipRef(tree.path(r), index[UNKNOWN]) for r in pool if checker.ok(tree.path(r))]
            n_clips = len(keyword_refs) + len(unknown_refs)
            silence = _silence_refs(_count(silence_frac, n_clips, "floor"), index[SILENCE], "zeros", seed, split)
        splits[split] = sorted(keyword_refs + unknown_refs, key=lambda ref: ref.path or "") + silence

    counts = {s: {name: 0 for name in labels} for s in splits}
    for s, refs in splits.items():
        for ref in refs:
            counts[s][labels[ref.label]] += 1
    info: dict[str, Any] = {
        "dataset": "speech_commands",
        "root": str(tree.root),
        "version": tree.version,
        "task": task,
        "protocol": protocol if task == "12" else "all-words",
        "seed": seed,
        "silence_fraction": float(silence_fraction),
        "unknown_fraction": float(unknown_fraction),
        "files_scanned": tree.num_files,
        "split_source": split_source,
        "test_source": "archive" if archive is not None else split_source,
        "test_archive": str(Path(test_archive).absolute()) if test_archive is not None else None,
        # with the archive, the tree's own test clips are in no split (as BC-ResNet and TFDS)
        "tree_test_clips_left_out": len(assigned["test"]) if archive is not None else 0,
        "unknown_words": sorted(w for w in tree.words if w not in keywords) if task == "12" else [],
        "ignored_words": sorted(w for w in tree.words if w not in index) if task == "35" else [],
        "counts": counts,
        "skipped": checker.skipped,
        "num_skipped": len(checker.skipped),
    }
    noise = [tree.path(r) for r in tree.noise_files]
    return Task(labels=labels, splits=splits, noise_files=noise, info=info)
