"""Train configs: TRL's config classes own what TRL owns; a small mixer dataclass holds what mixer adds.

A recipe is a flat YAML mapping (plus ``trainer: sft|dpo|rm|merge``, so a DPO recipe cannot be run by
``mixer train sft`` by mistake). Every key has one owner:

- :class:`~mixer.train.args.MixerArgs` (a subclass per method, in :mod:`mixer.train.args`): the data, batching
  mode, chat template, precision mode, effective batch and launch settings, which TRL does not have;
- TRL's ``ModelConfig``: model loading, attention, LoRA and 4-bit quantisation (``use_peft``, ``lora_r``, ...);
- the trainer's own TRL config (``SFTConfig``, ``DPOConfig``, ``RewardConfig``): optimisation, logging,
  checkpoints and the method's knobs (``learning_rate``, ``max_length``, ``beta``, ...), every field of it.

Values are checked against the owner's annotations by the recipe coercer (:func:`mixer.recipe.coerce.coerce`), so a
wrong type or an unknown key fails naming the key. Precedence: defaults < YAML file < CLI options < ``--set``.
Other names keep working (:data:`RENAMED`: ``model`` for TRL's ``model_name_or_path``, and old keys), and
``trl_args: {x: y}`` / ``--set trl_args.x=y`` still reach TRL.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from mixer.core.errors import RecipeError, did_you_mean
from mixer.core.yamlio import UniqueKeyLoader, read_yaml_file
from mixer.recipe.coerce import coerce
from mixer.train.accel.levers import check_levers
from mixer.train.args import (  # ConfigError: mixer.train.config.ConfigError, as callers import it
    ATTN_CHOICES,
    BATCHING_MODES,
    DEFAULTS,
    DERIVED,
    DTYPES,
    MIXED_PRECISION,
    MIXER_ARGS,
    RENAMED,
    TRL_CONFIGS,
    ConfigError,
    MergeArgs,
    check_choice,
)
from mixer.train.delta import check_peft
from mixer.train.trl_fields import LazyHint


class _Loader(UniqueKeyLoader):
    """YAML 1.2 scalars: only true/false are booleans (``save_strategy: no`` stays the string TrainingArguments
    expects) and ``2e-5`` is a float (YAML 1.1 wants ``2.0e-5``). A key given twice is an error."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"))


def _comma_list(kinds: tuple[Any, ...]) -> bool:
    """Whether a string value of a field typed ``kinds`` (its hint and the members of a union) is a comma-separated
    list: the field takes a list of strings (``lora_target_modules: list[str] | None``, TRL's own type) and not a
    plain string (``report_to: str | list[str]`` keeps ``wandb,tensorboard`` as TRL reads it)."""
    return str not in kinds and any(typing.get_origin(k) is list and typing.get_args(k) in ((str,), ()) for k in kinds)


def load_yaml(text: str) -> Any:
    """Parse recipe YAML (or one ``--set`` value) with YAML 1.2 booleans and floats."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _owner_fields(kind: str) -> list[tuple[str, list[tuple[str, Any, Any]]]]:
    """The classes that own ``kind``'s keys, by name, each with its fields as ``(name, annotation, default)``
    (``default`` a no-argument callable). TRL's are read from :mod:`mixer.train.trl_fields`, which imports
    TRL only when its record is not for the installed version: a dry run stays cheap."""
    from mixer.train.trl_fields import trl_fields

    if kind == "merge":
        return [_dataclass_fields(MergeArgs),
                ("ModelConfig", [(f.name, f.hint, f.default) for f in trl_fields("ModelConfig") if f.name == "dtype"])]
    from mixer.train.deps import require_train_deps

    require_train_deps()
    return [_dataclass_fields(MIXER_ARGS[kind]),
            *((owner, [(f.name, f.hint, f.default) for f in trl_fields(owner)])
              for owner in ("ModelConfig", TRL_CONFIGS[kind]))]


def _dataclass_fields(cls: type) -> tuple[str, list[tuple[str, Any, Any]]]:
    hints = typing.get_type_hints(cls)

    def default_of(f: dataclasses.Field) -> Any:
        return f.default_factory if f.default_factory is not dataclasses.MISSING else (lambda: f.default)

    return cls.__name__, [(f.name, hints[f.name], default_of(f)) for f in dataclasses.fields(cls) if f.init]


class RunConfig:
    """One run's settings, read flat as the recipe is written (``cfg.learning_rate``, ``cfg.batching``).

    ``args``: the mixer dataclass; ``values``: what is set for TRL's ``ModelConfig`` and trainer config (mixer's
    defaults, then the recipe's keys); an unset TRL field reads as TRL's own default.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.args = MIXER_ARGS[kind]()
        self.values: dict[str, Any] = {}
        self.owners: dict[str, tuple[str, Any]] = {}  # key -> (owner class name, annotation)
        self._defaults: dict[str, Any] = {}  # key -> a callable giving the owner's default
        for owner, fields in _owner_fields(kind):
            for name, hint, default in fields:
                if name not in self.owners:
                    self.owners[name] = (owner, hint)
                    self._defaults[name] = default
        mixer_owner = type(self.args).__name__
        for key, value in {**DEFAULTS["common"], **DEFAULTS.get(kind, {})}.items():
            if key in self.owners and self.owners[key][0] != mixer_owner:
                self.values[key] = copy.deepcopy(value)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("kind", "args", "values", "owners"):
            raise AttributeError(name)
        name = self.key(name)
        if hasattr(self.args, name):
            return getattr(self.args, name)
        if name in self.values:
            return self.values[name]
        if name in self.owners:
            return self._defaults[name]()
        raise AttributeError(f"{self.kind} config has no key {name!r}")

    def key(self, name: str) -> str:
        """The key that holds ``name``'s setting: itself, or the key it is another name for (:data:`RENAMED`)."""
        target = RENAMED.get(name, name)
        return name if name in self.owners and target not in self.owners else target

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some keys changed (what the host resolved, e.g. ``batching``)."""
        new = copy.copy(self)
        new.args = dataclasses.replace(self.args)
        new.values = dict(self.values)
        for key, value in changes.items():
            new.set(key, value, "resolved")
        return new

    def set(self, key: str, value: Any, source: str) -> None:
        """Set one key (``trl_args.x`` and renamed keys included), coerced to its owner's annotation."""
        head, _, rest = key.partition(".")
        if head == "trl_args":  # the old escape hatch: its keys are TRL's own now
            items = {rest: value} if rest else value
            if not isinstance(items, dict):
                raise ConfigError(f"{source}: trl_args must be a mapping of TRL config fields")
            for k, v in items.items():
                self.set(str(k), v, source)
            return
        name = self.key(head)
        if head == "trainer":  # a recipe file's own line; --set trainer=dpo was answered "did you mean do_train"
            other = f"; for a {value} run, use `mixer train {value}`" if value != self.kind else ""
            raise ConfigError(f"{source}: the trainer is chosen by the command (`mixer train {self.kind}`), not "
                              f"set{other}")
        if name not in self.owners:
            valid = sorted({*self.owners, *(alias for alias, target in RENAMED.items() if target in self.owners)})
            meant = [alias for alias, target in RENAMED.items() if target == head and alias in self.owners]
            hint = f" (did you mean {meant[0]!r}?)" if meant else did_you_mean(head, valid)
            owners = ", ".join(sorted({owner for owner, _ in self.owners.values()}))
            # a near miss is the answer; the whole list (~230 keys) would bury it
            listing = (f"{len(valid)} keys are valid: the fields of {owners}" if hint
                       else f"valid keys: {', '.join(valid)}")
            raise ConfigError(f"{source}: unknown key {head!r}{hint} for `{self.kind}`; {listing}")
        if rest:
            raise ConfigError(f"{source}: {head!r} is not a mapping, so {key!r} cannot be set")
        if name in DERIVED:
            raise ConfigError(f"{source}: {head} is derived from {DERIVED[name]}; set {DERIVED[name]} instead")
        if head == "warmup_ratio" and not (isinstance(value, (int, float)) and 0 <= value < 1):
            raise ConfigError(f"{source}: warmup_ratio must be in [0, 1), got {value!r}")
        owner, hint = self.owners[name]
        if isinstance(hint, LazyHint):  # a class outside the builtins (accelerate's ParallelismConfig)
            hint = hint.resolve()
        kinds = (hint, *typing.get_args(hint))
        if isinstance(value, str) and _comma_list(kinds):  # --set lora_target_modules=q_proj,v_proj
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, str) and value.lower() in _BOOL_WORDS and bool in kinds:
            value = _BOOL_WORDS[value.lower()]  # YAML 1.1's yes/no, for a field that can only be a boolean
        elif value in ("none", "None") and type(None) in kinds and str not in kinds:
            value = None  # --set max_train_samples=none
        if name == "resume_from_checkpoint" and isinstance(value, bool):  # as transformers reads it: true = last
            value = "last" if value else None
        try:
            value = coerce(value, hint, f"{source}: {head}")
        except RecipeError as e:
            raise ConfigError(str(e)) from None
        if owner == type(self.args).__name__:
            setattr(self.args, name, value)
        else:
            self.values[name] = value

    def validate(self) -> None:
        """Reject values TRL would only reject deep inside a run (or silently accept): the common keys here, the
        levers' (:func:`~mixer.train.accel.levers.check_levers`), the adapter's (:func:`~mixer.train.delta.check_peft`)
        and the trainer's own (:meth:`~mixer.train.args.MixerArgs.check`) where each is defined."""
        check_choice("dtype", self.dtype, DTYPES)
        if self.kind == "merge":
            return
        check_choice("bnb_4bit_compute_dtype", self.bnb_4bit_compute_dtype, DTYPES[1:])
        steps = self.max_steps if isinstance(self.max_steps, int) else -1
        if steps <= 0 and not self.num_train_epochs > 0:  # TRL would "train" 0 steps and save the base model
            raise ConfigError(f"num_train_epochs {self.num_train_epochs} with no max_steps: nothing would be "
                              "trained (the run would save the starting model as if trained); give "
                              "num_train_epochs > 0 or max_steps > 0")
        for name, choices in (("batching", BATCHING_MODES), ("attn_implementation", ATTN_CHOICES),
                              ("mixed_precision", MIXED_PRECISION)):
            check_choice(name, getattr(self, name), choices)
        check_levers(self)
        if "max_length" in self.owners and (not isinstance(self.max_length, int) or self.max_length < 1):
            raise ConfigError(f"max_length must be positive, got {self.max_length}")
        check_peft(self)
        if self.load_in_4bit and not self.use_peft:
            raise ConfigError("load_in_4bit (QLoRA) needs use_peft: true; 4-bit weights cannot be trained directly")
        if self.lora_r < 1:
            raise ConfigError(f"lora_r must be positive, got {self.lora_r}")
        self.args.check(self)

    def model_config(self, **changes: Any) -> Any:
        """TRL's ``ModelConfig`` of this run (``get_peft_config``/``get_quantization_config`` read it)."""
        from trl import ModelConfig

        names = {f.name for f in dataclasses.fields(ModelConfig)}
        kwargs = {k: v for k, v in self.values.items() if k in names}
        return ModelConfig(**{**kwargs, **changes})

    def trl_config(self, **derived: Any) -> Any:
        """The trainer's TRL config from the keys set and what mixer ``derived`` (accumulation, workers, ...);
        its own ValueErrors (bad combinations) become ``ConfigError``s."""
        import trl

        cls = getattr(trl, TRL_CONFIGS[self.kind])
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in self.values.items() if self.owners[k][0] == cls.__name__}
        if "activation_checkpointing" in names and "activation_checkpointing" not in kwargs:
            kwargs["activation_checkpointing"] = self.gradient_checkpointing  # transformers 5's name
        derived = {k: v for k, v in derived.items() if k in names}  # e.g. RLOO has no dataset_num_proc
        try:
            return cls(**{**kwargs, **derived})
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{cls.__name__}: {e}") from e

    def as_dict(self) -> dict[str, Any]:
        """The resolved config, flat, as a recipe writes it (``trainer`` first, then the model)."""
        flat = {**dataclasses.asdict(self.args), **self.values}
        model_key = self.key("model")
        return {"trainer": self.kind, model_key: flat.pop(model_key, None), **flat}


_BOOL_WORDS = {"yes": True, "no": False, "on": True, "off": False}


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` with the value parsed as a YAML scalar (``true``, ``3``, ``null``, ``[a, b]``)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


#: The shipped training recipes and accelerate presets (package data; ``train/`` in a checkout links here).
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped with mixer (``--config NAME``)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def resolve_recipe(name_or_path: str | Path) -> Path:
    """A recipe file: an existing path as given, else a shipped recipe by name (``tulu2-sft``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    name = p.name[:-5] if p.name.endswith(".yaml") else p.name
    shipped = RECIPES_DIR / f"{name}.yaml"
    if (len(p.parts) <= 1 or p.parts[-2:-1] == ("train",)) and shipped.is_file():  # train/<name>.yaml elsewhere
        return shipped
    raise ConfigError(f"config {name_or_path} is neither a file nor a shipped recipe; shipped: "
                      f"{', '.join(shipped_recipes())}")


def read_recipe(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """A recipe file's mapping, with errors naming the file (and the line of a byte that is not UTF-8)."""
    p = resolve_recipe(path)
    _, data = read_yaml_file(p, loader=_Loader, error=ConfigError)
    raw = data or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of config keys")
    return p, raw


def _check_one_name_each(cfg: RunConfig, raw: dict[str, Any], where: str) -> None:
    """Refuse a recipe that sets one key under two of its names to different values (``use_lora`` and
    ``use_peft``). Which names are one key depends on the trainer (``merge``'s ``model`` is its own key)."""
    given: dict[str, str] = {}
    for key, value in raw.items():
        name = cfg.key(str(key))
        if name in given and raw[given[name]] != value:
            raise ConfigError(f"{where}: {given[name]!r} and {key!r} both set {name!r} (one is another name for it), "
                              f"to {raw[given[name]]!r} and {value!r}: keep one")
        given[name] = str(key)


def load_config(kind: str, path: str | Path | None = None, overrides: list[str] | None = None,
                **cli_values: Any) -> RunConfig:
    """The run config for ``kind`` (sft, dpo, rm, merge): defaults < YAML file < CLI options < ``--set``.

    ``cli_values`` are the dedicated options (``model=``, ``data=``, ``output_dir=``...); ``None`` means
    "not given". Unknown keys anywhere raise ``ConfigError`` listing the valid keys.
    """
    if kind not in MIXER_ARGS:
        raise ConfigError(f"unknown trainer {kind!r}; expected one of {', '.join(MIXER_ARGS)}")
    cfg = RunConfig(kind)
    if path is not None:
        p, raw = read_recipe(path)
        raw.pop("resolved", None)  # what a saved run resolved on its host (see runtime), not a setting
        declared = raw.pop("trainer", kind)
        if declared != kind:
            raise ConfigError(f"{p} is a `{declared}` recipe; run it with `mixer train {declared}`")
        _check_one_name_each(cfg, raw, str(p))
        for key, value in raw.items():
            cfg.set(str(key), value, str(p))
    for key, value in cli_values.items():
        if value is not None:
            cfg.set(key, value, "command line")
    for item in overrides or []:
        cfg.set(*parse_override(item), f"--set {item}")
    cfg.validate()
    return cfg


def to_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML (what ``--dry-run`` prints and a run saves beside its model)."""
    return yaml.safe_dump(cfg.as_dict(), sort_keys=False, default_flow_style=None)
