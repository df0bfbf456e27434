"""Convert an original LLaVA-NeXT checkpoint (LLaVA-Video-7B-Qwen2) into a LlavaOnevisionForConditionalGeneration one.

    convert_checkpoint("lmms-lab/LLaVA-Video-7B-Qwen2", "out/")   # or a local directory in the original layout
    ensure_converted("lmms-lab/LLaVA-Video-7B-Qwen2")              # cached copy for the `llava-video-7b` profile

Built for a 15 GB checkpoint on a shared machine:
- everything is checked from metadata before a byte is written: config, tokenizer, and every tensor's name and
  shape against the target model built on the meta device (see convert_keys);
- tensors are streamed one at a time into safetensors shards written here (header from metadata, then raw
  bytes), so peak memory is one tensor, not a shard or the model; free disk space is checked first;
- output goes to a hidden temporary directory beside OUT_DIR that is renamed into place at the very end, so
  OUT_DIR is either untouched or complete; `forestprune.json` (written last) marks a finished conversion;
- only safetensors are read (`*.bin` files of the source repository are never downloaded), nothing runs remote code.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import struct
from contextlib import ExitStack
from pathlib import Path

from fpcli import __version__
from fpcli.model.cache_dir import forestprune_cache_dir
from fpcli.model.llava.convert_config import (
    build_config,
    load_tokenizer,
    original_video_settings,
    read_original_config,
    text_config,
    vision_tower,
    write_generation_config,
    write_processor_files,
)
from fpcli.model.llava.convert_keys import ConversionError, Move, TensorInfo, plan_tensors
from fpcli.model.hub import (
    Notify,
    Progress,
    check_free_space,
    human_size,
    looks_like_hub_id,
    require_safetensors,
    say,
    snapshot,
)

__all__ = ["MARKER", "convert_checkpoint", "converted_dir", "ensure_converted", "human_size", "is_converted"]

MARKER = "forestprune.json"
DEFAULT_SHARD_BYTES = 5 * 1024**3
# What a conversion needs from a hub repository: weights as safetensors only, configs, tokenizer files.
_HUB_PATTERNS = ["*.safetensors", "*.json", "merges.txt", "vocab.json", "*.model", "*.tiktoken", "*.jinja"]
_ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def convert_checkpoint(source: str | os.PathLike, out_dir: str | os.PathLike, *, force: bool = False,
                       progress: Progress | None = None, notify: Notify | None = None,
                       max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> Path:
    """Convert `source` (hub id or directory in the original layout) into `out_dir`; return `out_dir`.

    A non-empty `out_dir` is refused unless `force`, in which case it is replaced once the new one is complete."""
    out = Path(out_dir).expanduser().absolute()
    _check_out_dir(out, force)
    src, provenance = _resolve_source(str(source), out, progress, notify)
    if out.resolve() == src.resolve() or out.resolve() in src.resolve().parents:
        raise ConversionError(f"OUT_DIR {out} would replace the source checkpoint {src}")

    original = read_original_config(src)
    tower = vision_tower(original)
    text = text_config(original)
    tokenizer, image_id, video_id = load_tokenizer(src, text)
    config = build_config(original, text, tower, image_id, video_id)
    plan = plan_tensors(_source_tensors(src), _expected_shapes(config), config.vision_config.num_hidden_layers,
                        config.tie_word_embeddings)
    shards = _shard(plan.moves, max_shard_bytes)
    total = sum(_nbytes(move.source) for move in plan.moves)

    out.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(out.parent, total, "the converted checkpoint", ConversionError)
    say(notify, f"Converting {provenance['source']} into {out} ({len(plan.moves)} tensors, {human_size(total)})")
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")
    partial.mkdir()  # created with the user's umask, unlike mkdtemp's 0700, so the result is shareable
    try:
        _write_shards(src, partial, shards, total, progress)
        config.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        write_processor_files(partial, config)
        write_generation_config(src, partial, config)
        marker = {"layout": "video", **provenance, "converted_by": f"forestprune {__version__}",
                  "tensors": len(plan.moves), "total_size": total, "dropped": plan.dropped,
                  "original": original_video_settings(original)}
        (partial / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        _install(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if "revision" in provenance:
        say(notify, f"The original files of {provenance['source']} stay in the Hugging Face cache ({src.parent.parent}); "
                     "delete them there if you no longer need them")
    return out


def converted_dir(repo_id: str) -> Path:
    """Where `ensure_converted` keeps the conversion of `repo_id`: $FORESTPRUNE_CACHE, else the XDG cache."""
    return forestprune_cache_dir() / "converted" / repo_id.replace("/", "--")


def is_converted(directory: Path) -> bool:
    """True when `directory` holds a finished conversion (the marker is written last, before the atomic rename)."""
    try:
        return "converted_by" in json.loads((directory / MARKER).read_text())
    except (OSError, ValueError, TypeError):
        return False


def ensure_converted(repo_id: str, progress: Progress | None = None, notify: Notify | None = None) -> Path:
    """The converted copy of hub checkpoint `repo_id` in the user's cache, converting it on first use."""
    target = converted_dir(repo_id)
    if is_converted(target):
        return target
    say(notify, f"{repo_id} is published only in the original LLaVA-NeXT format; converting it once into {target}")
    return convert_checkpoint(repo_id, target, force=True, progress=progress, notify=notify)


def _check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConversionError(f"OUT_DIR exists and is not a directory ({out})")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConversionError(f"OUT_DIR is not empty ({out})", hint="pass --force to replace it, or choose a new directory")


def _install(partial: Path, out: Path) -> None:
    """Put the finished `partial` directory at `out`, replacing what is there (checked by `_check_out_dir`)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.replaced-{secrets.token_hex(4)}")
        os.rename(out, old)
    os.rename(partial, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- source ---------------------------------------------------------------------------------------------------

def _resolve_source(source: str, out: Path, progress: Progress | None, notify: Notify | None) -> tuple[Path, dict]:
    """A local directory with the original checkpoint, and its provenance for forestprune.json."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path.absolute(), {"source": str(path.absolute())}
    if path.exists() or not looks_like_hub_id(source):
        raise ConversionError(f"SOURCE {source} is neither a checkpoint directory nor a Hugging Face id")
    directory = _download(source, out, progress, notify)
    return directory, {"source": source, "revision": directory.name}  # a snapshot directory is named by its commit


def _download(repo_id: str, out: Path, progress: Progress | None, notify: Notify | None) -> Path:
    """The files a conversion into `out` needs, from the hub cache or downloaded there (room for both checked)."""
    def room(cache: Path, download: int, weights: int) -> None:
        _check_room(cache, download, out, weights, repo_id)

    return snapshot(repo_id, _HUB_PATTERNS, error=ConversionError, progress=progress, notify=notify, check_room=room)


def _check_room(cache: Path, download: int, out: Path, output: int, repo_id: str) -> None:
    """Fail before downloading when the download and the converted copy (about the weights' size) cannot both fit."""
    anchor = next(p for p in (out, *out.parents) if p.exists())
    if os.stat(anchor).st_dev == os.stat(cache).st_dev:
        check_free_space(cache, download + output, f"downloading and converting {repo_id}", ConversionError)
    else:
        check_free_space(cache, download, f"downloading {repo_id}", ConversionError)
        check_free_space(anchor, output, f"converting {repo_id}", ConversionError)


def _source_tensors(source: Path) -> list[TensorInfo]:
    """Every tensor of the source's safetensors files (name, file, dtype, shape), read from the headers only."""
    from safetensors import safe_open

    index = source / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError) as exc:
            raise ConversionError(f"cannot read {index}: {exc}") from None
        files = sorted(set(weight_map.values()))
    else:
        require_safetensors(source, ConversionError)
        weight_map, files = {}, ["model.safetensors"]
    tensors = []
    for file in files:
        if not (source / file).is_file():
            raise ConversionError(f"shard {file} listed in {index.name} is missing from {source}")
        with safe_open(source / file, framework="pt") as handle:
            names = list(handle.keys())
            for name in names:
                piece = handle.get_slice(name)
                tensors.append(TensorInfo(name, file, piece.get_dtype(), tuple(piece.get_shape())))
        listed = {name for name, shard in weight_map.items() if shard == file}
        if listed - set(names):
            raise ConversionError(f"{file} lacks tensors its index lists: {', '.join(sorted(listed - set(names))[:3])}")
    return tensors


def _expected_shapes(config) -> dict[str, tuple[int, ...]]:
    """{parameter name: shape} of the target model, built on the meta device (no memory), tied copies excluded."""
    import torch
    from transformers import LlavaOnevisionForConditionalGeneration

    with torch.device("meta"):
        model = LlavaOnevisionForConditionalGeneration(config)
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    return {name: tuple(t.shape) for name, t in model.state_dict().items() if name not in tied}


# --- writing ----------------------------------------------------------------------------------------------------

def _nbytes(info: TensorInfo) -> int:
    if info.dtype not in _ITEM_BYTES:
        raise ConversionError(f"tensor {info.name!r} has unsupported dtype {info.dtype}")
    return math.prod(info.shape) * _ITEM_BYTES[info.dtype]


def _shard(moves: list[Move], max_bytes: int) -> list[list[Move]]:
    """Consecutive groups of at most `max_bytes` (a larger tensor gets a shard of its own), in source order."""
    shards: list[list[Move]] = [[]]
    size = 0
    for move in moves:
        n = _nbytes(move.source)
        if shards[-1] and size + n > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(move)
        size += n
    return shards


def _write_shards(source: Path, directory: Path, shards: list[list[Move]], total: int,
                  progress: Progress | None) -> None:
    """Write the shards (and their index when there are several), reading one source tensor at a time."""
    import torch
    from safetensors import safe_open

    names = (["model.safetensors"] if len(shards) == 1 else
             [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
    weight_map: dict[str, str] = {}
    done = 0
    with ExitStack() as stack:
        handles: dict[str, object] = {}
        for name, shard in zip(names, shards):
            shard = sorted(shard, key=lambda move: move.target)  # header order == data order
            header, offset = {}, 0
            for move in shard:
                n = _nbytes(move.source)
                header[move.target] = {"dtype": move.source.dtype, "shape": list(move.source.shape),
                                       "data_offsets": [offset, offset + n]}
                offset += n
                weight_map[move.target] = name
            header["__metadata__"] = {"format": "pt"}
            encoded = json.dumps(header, separators=(",", ":")).encode()
            encoded += b" " * (-len(encoded) % 8)  # the data section starts 8-byte aligned
            with open(directory / name, "wb") as out:
                out.write(struct.pack("<Q", len(encoded)) + encoded)
                for move in shard:
                    file = move.source.file
                    if file not in handles:
                        handles[file] = stack.enter_context(safe_open(source / file, framework="pt"))
                    tensor = handles[file].get_tensor(move.source.name)  # [*shape], one tensor in memory
                    out.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())
                    done += _nbytes(move.source)
                    del tensor
                    if progress is not None:
                        progress("convert", done, total)
                out.flush()
                os.fsync(out.fileno())
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
