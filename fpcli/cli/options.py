"""The options the commands share, `--config` defaults, and the settings they turn into.

Precedence: built-in defaults < `--config FILE.yaml` < flags on the command line. The config
file is a YAML mapping of option names (`ratio: 0.8`, `max-new-tokens: 64` or `max_new_tokens`);
it is read by an eager option callback that fills click's `default_map`, so every value goes
through the same type conversion and range checks as a flag would.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml

from fpcli.cli.errors import UsageError, set_debug, usage_error

MAX_FRAMES = 1024
DEFAULT_RATIO = 0.9
PRUNE_PANEL = "Pruning"
MODEL_PANEL = "Model"
GENERATION_PANEL = "Generation"
OUTPUT_PANEL = "Output"


class Layout(str, Enum):
    onevision = "onevision"
    video = "video"


class DType(str, Enum):
    auto = "auto"
    bfloat16 = "bfloat16"
    float16 = "float16"
    float32 = "float32"


class Attention(str, Enum):
    sdpa = "sdpa"
    eager = "eager"
    flash_attention_2 = "flash_attention_2"


def _check_ratio(value: Optional[float]) -> Optional[float]:
    if value is not None and not 0 <= value < 1:  # also rejects NaN
        raise typer.BadParameter(f"{value} is not in [0, 1) (the fraction of visual tokens to drop)")
    return value


def _check_fps(value: Optional[float]) -> Optional[float]:
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value} is not a positive rate (frames per second)")
    return value


def _check_device(value: str) -> str:
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise typer.BadParameter(f"{value!r} is not auto, cpu, cuda or cuda:N")


def yaml_problem(exc: yaml.YAMLError) -> str:
    """`expected ',' or '}', but got '?' (line 2)` rather than PyYAML's multi-line report."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (line {mark.line + 1})" if mark is not None else problem


def _key(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _long_names(params: list[Any]) -> dict[str, Any]:
    """Config key (a long flag without dashes, `-` or `_` alike) -> click option."""
    return {
        _key(flag): p
        for p in params
        if p.param_type_name == "option" and p.name != "config"
        for flag in p.opts
        if flag.startswith("--")
    }


def _config_keys(ctx: typer.Context) -> dict[str, Any]:
    """Config keys this command takes -> its option; keys only other commands take -> None (ignored here),
    so one config file can serve every command."""
    root = ctx.find_root().command
    keys: dict[str, Any] = {
        key: None for command in getattr(root, "commands", {}).values() for key in _long_names(command.params)
    }
    keys.update(_long_names(ctx.command.params))
    return keys


def _load_config(ctx: typer.Context, param: typer.CallbackParam, value: Optional[Path]) -> Optional[Path]:
    if value is None or ctx.resilient_parsing:
        return value
    try:
        data = yaml.safe_load(value.read_text(encoding="utf-8"))
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {value}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"{value} is not valid YAML: {yaml_problem(exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{value} must be a YAML mapping of option names to values")
    keys = _config_keys(ctx)
    defaults: dict[str, Any] = {}
    for key, raw in data.items():
        name = _key(str(key))
        if name not in keys:
            known = ", ".join(sorted(k.replace("_", "-") for k in keys))
            raise typer.BadParameter(f"unknown option '{key}' in {value} (known: {known})")
        option = keys[name]
        if option is None:
            continue
        try:  # check now, so the message can name the config file
            option.process_value(ctx, raw)
        except typer.BadParameter as exc:
            raise typer.BadParameter(f"'{key}' in {value}: {exc.message}") from exc
        defaults[option.name] = raw
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


Model = Annotated[
    Optional[str],
    typer.Option(
        "--model", "-m", rich_help_panel=MODEL_PANEL,
        help="Profile (llava-ov-0.5b, llava-ov-7b, llava-ov-72b, llava-video-7b), Hugging Face id or checkpoint "
        "folder. Default: llava-video-7b with CUDA, llava-ov-0.5b on CPU.",
    ),
]
LayoutOpt = Annotated[
    Optional[Layout],
    typer.Option("--layout", rich_help_panel=MODEL_PANEL,
                 help="Token layout of a checkpoint given by path or id (default: the profile's, else onevision)."),
]
Device = Annotated[
    str,
    typer.Option("--device", callback=_check_device, rich_help_panel=MODEL_PANEL, help="auto, cpu, cuda or cuda:N."),
]
DTypeOpt = Annotated[DType, typer.Option("--dtype", rich_help_panel=MODEL_PANEL,
                                         help="auto: bfloat16 on CUDA, float32 on CPU.")]
Attn = Annotated[Attention, typer.Option("--attn", rich_help_panel=MODEL_PANEL, help="Attention implementation.")]
Ratio = Annotated[
    Optional[float],
    typer.Option("--ratio", "-r", callback=_check_ratio, rich_help_panel=PRUNE_PANEL, show_default=False,
                 help=f"Fraction of visual tokens to drop, in [0, 1) (default {DEFAULT_RATIO}; 0 with --method none)."),
]
Method = Annotated[
    str,
    typer.Option("--method", rich_help_panel=PRUNE_PANEL,
                 help="none, uniform, random, gprune, divprune, dycoke or forestprune."),
]
TauS = Annotated[
    Optional[float],
    typer.Option("--tau-s", rich_help_panel=PRUNE_PANEL, show_default=False,
                 help="ForestPrune: cosine similarity a token needs to join an earlier frame's tree, in [-1, 1] "
                 "(default 0.9)."),
]
TauP = Annotated[
    Optional[float],
    typer.Option("--tau-p", rich_help_panel=PRUNE_PANEL, show_default=False,
                 help="ForestPrune: that link also needs a normalised distance <= 1 - tau_p, in [0, 1] (default 0.8)."),
]
Frames = Annotated[
    Optional[int],
    typer.Option("--frames", "-f", min=1, max=MAX_FRAMES, rich_help_panel=PRUNE_PANEL,
                 help="Frames sampled uniformly from the video (default: the model's, 32 or 64)."),
]
Fps = Annotated[
    Optional[float],
    typer.Option("--fps", callback=_check_fps, rich_help_panel=PRUNE_PANEL, show_default=False,
                 help="Sample a frame every 1/FPS seconds instead; --frames is then the cap (default 1024)."),
]
MaxNewTokens = Annotated[int, typer.Option("--max-new-tokens", min=1, rich_help_panel=GENERATION_PANEL,
                                           help="Longest answer, in tokens.")]
Temperature = Annotated[float, typer.Option("--temperature", min=0.0, rich_help_panel=GENERATION_PANEL,
                                            help="Sampling temperature; 0 = greedy.")]
Seed = Annotated[int, typer.Option("--seed", rich_help_panel=GENERATION_PANEL,
                                   help="Seed for sampling and the random method.")]
Config = Annotated[
    Optional[Path],
    typer.Option("--config", is_eager=True, callback=_load_config, dir_okay=False, rich_help_panel=OUTPUT_PANEL,
                 help="YAML file with defaults for any option; flags on the command line win."),
]
Json = Annotated[bool, typer.Option("--json", rich_help_panel=OUTPUT_PANEL,
                                    help="One JSON object per video on stdout, nothing else.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel=OUTPUT_PANEL,
                                     help="No progress bars or messages on stderr (errors still show).")]
# Not passed to the command: its callback records it in ctx.meta, where error handling looks (errors.debug_enabled).
Debug = Annotated[bool, typer.Option("--debug", callback=set_debug, expose_value=False, rich_help_panel=OUTPUT_PANEL,
                                     help="Show the traceback of errors.")]


@dataclass(frozen=True)
class ModelSettings:
    """What `load_model` gets."""

    model: Optional[str]
    layout: Optional[str]
    device: str
    dtype: str
    attn: str

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ModelSettings:
        """From a command's parsed options (click's ctx.params); `stats` has no --attn and uses sdpa."""
        return cls(
            model=params["model"],
            layout=_plain(params["layout"]),
            device=params["device"],
            dtype=_plain(params["dtype"]),
            attn=_plain(params.get("attn", Attention.sdpa)),
        )


def _plain(value: Any) -> Any:
    """An Enum option's value as its string (None stays None)."""
    return value.value if isinstance(value, Enum) else value


@dataclass(frozen=True)
class RunSettings:
    """Per-video settings: pruning, sampling and generation. Batch items may override them."""

    ratio: Optional[float] = None  # None: not given anywhere (see prune_ratio)
    method: str = "forestprune"
    frames: Optional[int] = None
    tau_s: Optional[float] = None
    tau_p: Optional[float] = None
    max_new_tokens: int = 128
    temperature: float = 0.0
    seed: int = 0
    fps: Optional[float] = None
    compare: tuple[str, ...] = field(default=())

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RunSettings:
        """From a command's parsed options (click's ctx.params): those it has, the defaults for the others."""
        given = {f.name: params[f.name] for f in fields(cls) if f.name in params and f.name != "compare"}
        return cls(**given, compare=parse_compare(params.get("compare")))

    @property
    def prune_ratio(self) -> float:
        """The ratio as given; not given: 0.9, or 0 with method none (which keeps every token)."""
        if self.ratio is not None:
            return self.ratio
        return 0.0 if self.method == "none" else DEFAULT_RATIO

    def sampling(self, model: Any) -> dict[str, Any]:
        """Keyword arguments of `sample_frames` after the path: uniform --frames, or --fps capped by --frames.

        `model.default_frames` (a VideoLLM's, or a LazyModel's) is read only when --frames and --fps are not given.
        """
        if self.fps is None:
            return {"num_frames": self.frames or model.default_frames}
        return {"num_frames": self.frames or MAX_FRAMES, "fps": self.fps, "max_frames": self.frames or MAX_FRAMES}

    def prune_options(self, method: Optional[str] = None) -> dict[str, Any]:
        """Keyword options for `prune(..., method=...)`: tau thresholds go to forestprune, the seed to random."""
        method = method or self.method
        if method == "random":
            return {"seed": self.seed}
        if method != "forestprune":
            return {}
        given = {"tau_s": self.tau_s, "tau_p": self.tau_p}
        return {name: value for name, value in given.items() if value is not None}

    def methods(self) -> list[str]:
        """--method first, then the --compare ones not already listed."""
        return list(dict.fromkeys((self.method, *self.compare)))

    def override(self, options: dict[str, Any]) -> RunSettings:
        """A copy with a batch item's `options` applied; ValueError names a bad key or value."""
        changes: dict[str, Any] = {}
        for key, value in options.items():
            name = str(key).replace("-", "_")
            if name not in ITEM_OPTIONS:
                raise ValueError(f"unknown option '{key}' (allowed: {', '.join(ITEM_OPTIONS)})")
            kind = ITEM_OPTIONS[name]
            if value is None and name in ("ratio", "frames", "fps", "tau_s", "tau_p"):
                changes[name] = None
                continue
            accepted = (int, float) if kind is float else kind  # YAML/JSON write 1.0 as 1
            if isinstance(value, bool) or not isinstance(value, accepted):
                raise ValueError(f"option '{key}' must be {kind.__name__}, got {value!r}")
            changes[name] = float(value) if kind is float else value
        settings = replace(self, **changes)
        settings.check_ranges()
        return settings

    def check_ranges(self) -> None:
        """The bounds the command-line options enforce, for values that come from elsewhere."""
        if self.ratio is not None and not 0 <= self.ratio < 1:
            raise ValueError(f"ratio must be in [0, 1), got {self.ratio}")
        if self.frames is not None and not 1 <= self.frames <= MAX_FRAMES:
            raise ValueError(f"frames must be in 1..{MAX_FRAMES}, got {self.frames}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


# Options a batch item may set for itself (name -> type); model, device etc. are per batch.
ITEM_OPTIONS: dict[str, type] = {
    "ratio": float,
    "method": str,
    "frames": int,
    "fps": float,
    "tau_s": float,
    "tau_p": float,
    "max_new_tokens": int,
    "temperature": float,
    "seed": int,
}


def check_prune(settings: RunSettings) -> None:
    """Check ratio, method(s) and their options against fpcli.prune, without any model.

    prune() owns the rules (allowed methods, option names and ranges); running it on a 2-frame
    2x2 random input applies exactly those checks in microseconds, before a model loads for minutes.
    Raises ValueError with prune's message.
    """
    import torch

    from fpcli.prune import prune

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 4, 8, generator=generator)  # [T, N, D]
    extras = {"vision_attention": torch.rand(2, 4, generator=generator), "vision_keys": features}  # like encode's
    for method in settings.methods():
        prune(features, (2, 2), settings.prune_ratio, method, extras=extras, **settings.prune_options(method))


def settings_from(ctx: typer.Context) -> tuple[RunSettings, ModelSettings]:
    """A command's options as settings, the pruning ones checked: a bad value is a usage error (exit 2)."""
    settings = RunSettings.from_params(ctx.params)
    try:
        check_prune(settings)
    except ValueError as exc:
        if settings.method == "none" and settings.prune_ratio != 0:
            raise usage_error(str(exc), hint="use --ratio 0 with --method none") from exc
        raise UsageError(str(exc)) from exc
    return settings, ModelSettings.from_params(ctx.params)


def parse_compare(value: Optional[str]) -> tuple[str, ...]:
    """'uniform, gprune' -> ('uniform', 'gprune')."""
    if not value:
        return ()
    return tuple(name.strip() for name in value.split(",") if name.strip())
