"""Keras initializer, regularizer and constraint specs <-> libattention's C structs.

A spec is what Keras accepts: a name ("glorot_uniform", "GlorotUniform", "l2", "max_norm"), a
Keras config dict ({"class_name": "RandomNormal", "config": {"stddev": 0.1}}, "module"
optional), a Keras object (keras.initializers.HeNormal(seed=1), keras.regularizers.L2(0.1),
keras.constraints.MaxNorm(3): recognised by class name and read through get_config(), Keras is
never imported), or None (no regularizer / constraint). Each spec is normalised to a Keras class
name plus its full config (Keras's defaults filled in), which converts to the C struct and
serialises back to the dict Keras's `serialize` produces.

Weights are drawn from the layer's seed; an initializer's own "seed" is kept for get_config.
"""

from . import _lib

# Keras class name -> (C kind, {config key: Keras default}).
_INITIALIZERS = {
    "GlorotUniform": (1, {"seed": None, "input_axes": None, "output_axes": None}),
    "GlorotNormal": (2, {"seed": None, "input_axes": None, "output_axes": None}),
    "HeUniform": (3, {"seed": None, "input_axes": None, "output_axes": None}),
    "HeNormal": (4, {"seed": None, "input_axes": None, "output_axes": None}),
    "LecunUniform": (5, {"seed": None, "input_axes": None, "output_axes": None}),
    "LecunNormal": (6, {"seed": None, "input_axes": None, "output_axes": None}),
    "RandomNormal": (7, {"seed": None, "mean": 0.0, "stddev": 0.05}),
    "RandomUniform": (8, {"seed": None, "minval": -0.05, "maxval": 0.05}),
    "TruncatedNormal": (9, {"seed": None, "mean": 0.0, "stddev": 0.05}),
    "Zeros": (10, {}),
    "Ones": (11, {}),
    "Constant": (12, {"value": 0.0}),
    "Orthogonal": (13, {"seed": None, "gain": 1.0}),
}
_INITIALIZER_ALIASES = {"normal": "RandomNormal", "uniform": "RandomUniform", "zero": "Zeros", "one": "Ones"}
_INIT_ZEROS = 10

_REGULARIZERS = {
    "L1": (1, {"l1": 0.01}),
    "L2": (2, {"l2": 0.01}),
    "L1L2": (3, {"l1": 0.0, "l2": 0.0}),
}
_REGULARIZER_ALIASES = {"l1_l2": "L1L2"}

_CONSTRAINTS = {
    "MaxNorm": (1, {"max_value": 2, "axis": 0}),
    "NonNeg": (2, {}),
    "UnitNorm": (3, {"axis": 0}),
    "MinMaxNorm": (4, {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}),
}


def _snake(name):
    """Keras's to_snake_case for these class names: GlorotUniform -> glorot_uniform,
    L1L2 -> l1l2, MaxNorm -> max_norm."""
    out = ""
    for i, c in enumerate(name):
        if c.isupper() and i > 0 and name[i - 1].islower():
            out += "_"
        out += c.lower()
    return out


class _Family:
    """One of Keras's three registries (initializers, regularizers, constraints)."""

    def __init__(self, what, module, table, aliases):
        self.what, self.module, self.table = what, module, table
        self.names = {name: name for name in table}
        self.names.update({_snake(name): name for name in table})
        self.names.update(aliases)

    def normalise(self, spec):
        """(class name, full config) of a spec; None stays None. Unknown -> ValueError."""
        if spec is None:
            return None
        if isinstance(spec, str):
            class_name, config = spec, {}
        elif isinstance(spec, dict) and "class_name" in spec:
            class_name, config = spec["class_name"], dict(spec.get("config") or {})
        elif callable(getattr(spec, "get_config", None)) and type(spec).__name__ in self.table:
            # A Keras object (keras.initializers.HeNormal(seed=1), keras.regularizers.L2(0.1),
            # ...), read by duck typing as from_keras reads layers: class name + get_config().
            class_name, config = type(spec).__name__, spec.get_config()
            if not isinstance(config, dict):
                raise ValueError(f"{class_name}.get_config() gave {config!r}, not a dict")
            config = dict(config)
        else:
            raise ValueError(
                f"Could not interpret {self.what} identifier: {spec!r} (expected a name such as "
                f"{next(iter(self.names))!r}, a Keras config dict, a Keras {self.what} object of "
                f"a supported class, or None)"
            )
        if class_name not in self.names:
            raise ValueError(
                f"Unknown {self.what}: {class_name!r}. Supported: {', '.join(sorted(self.table))}"
            )
        class_name = self.names[class_name]
        defaults = self.table[class_name][1]
        unknown = set(config) - set(defaults)
        if unknown:
            raise ValueError(
                f"Unknown config keys for {self.what} {class_name}: {sorted(unknown)}; "
                f"expected a subset of {sorted(defaults)}"
            )
        return class_name, {**defaults, **config}

    def serialize(self, normalised):
        """The dict keras.<family>.serialize() gives (None for None)."""
        if normalised is None:
            return None
        class_name, config = normalised
        return {"module": self.module, "class_name": class_name, "config": dict(config),
                "registered_name": None}

    def kind(self, class_name):
        """The C enum value of a Keras class name of this family."""
        return self.table[class_name][0]


INITIALIZERS = _Family("initializer", "keras.initializers", _INITIALIZERS, _INITIALIZER_ALIASES)
REGULARIZERS = _Family("regularizer", "keras.regularizers", _REGULARIZERS, _REGULARIZER_ALIASES)
CONSTRAINTS = _Family("constraint", "keras.constraints", _CONSTRAINTS, {})


def _number(config, key, what):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what}: {key} must be a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{what}: {key} {value} is beyond the float64 range") from None


def initializer_struct(normalised):
    """att_initializer for a normalised initializer (None is an error: Keras needs one)."""
    if normalised is None:
        raise ValueError("an initializer is required (a name such as 'glorot_uniform' or a config dict)")
    name, config = normalised
    kind = INITIALIZERS.kind(name)
    if config.get("input_axes") is not None or config.get("output_axes") is not None:
        raise ValueError(f"{name}: explicit input_axes/output_axes are not supported (the layer chooses them)")
    params = {
        "RandomNormal": ("mean", "stddev"),
        "TruncatedNormal": ("mean", "stddev"),
        "RandomUniform": ("minval", "maxval"),
        "Constant": ("value",),
        "Orthogonal": ("gain",),
    }.get(name, ())
    values = [_number(config, key, name) for key in params] + [0.0, 0.0]
    a, b = values[0], values[1]
    # The C struct reads all-zero parameters as Keras's defaults; an explicit all-zero
    # distribution (stddev 0, range [0, 0], gain 0) is the zeros initializer.
    if params and name != "Constant" and a == 0.0 and b == 0.0:
        kind = _INIT_ZEROS
    return _lib.Initializer(kind=kind, a=a, b=b)


def regularizer_struct(normalised):
    """att_regularizer (ATT_REG_NONE for None)."""
    if normalised is None:
        return _lib.Regularizer()
    name, config = normalised
    return _lib.Regularizer(
        kind=REGULARIZERS.kind(name),
        l1=_number(config, "l1", name) if "l1" in config else 0.0,
        l2=_number(config, "l2", name) if "l2" in config else 0.0,
    )


def constraint_struct(normalised):
    """att_constraint (ATT_CONSTRAINT_NONE for None)."""
    if normalised is None:
        return _lib.Constraint()
    name, config = normalised
    axis = config.get("axis", 0)
    if isinstance(axis, bool) or not isinstance(axis, int) or not -(2**31) <= axis < 2**31:
        raise ValueError(f"{name}: axis must be one 32-bit integer, got {axis!r}")
    return _lib.Constraint(
        kind=CONSTRAINTS.kind(name),
        min_value=_number(config, "min_value", name) if "min_value" in config else 0.0,
        max_value=_number(config, "max_value", name) if "max_value" in config else 0.0,
        rate=_number(config, "rate", name) if "rate" in config else 0.0,
        axis=axis,
    )


class WeightOptions:
    """The seven weight options of a layer built from dense projections (kernel_initializer,
    bias_initializer, kernel_regularizer, bias_regularizer, activity_regularizer,
    kernel_constraint, bias_constraint), normalised once; as C struct fields
    (`structs()`) and as Keras's get_config entries (`config()`)."""

    _FAMILIES = {
        "kernel_initializer": INITIALIZERS, "bias_initializer": INITIALIZERS,
        "kernel_regularizer": REGULARIZERS, "bias_regularizer": REGULARIZERS,
        "activity_regularizer": REGULARIZERS,
        "kernel_constraint": CONSTRAINTS, "bias_constraint": CONSTRAINTS,
    }
    _STRUCTS = {INITIALIZERS: initializer_struct, REGULARIZERS: regularizer_struct,
                CONSTRAINTS: constraint_struct}

    def __init__(self, **specs):
        self._normalised = {key: family.normalise(specs[key]) for key, family in self._FAMILIES.items()}
        self.has_activity_regularizer = self.config()["activity_regularizer"] is not None

    def structs(self):
        """{config field: att_initializer / att_regularizer / att_constraint}."""
        return {key: self._STRUCTS[family](self._normalised[key])
                for key, family in self._FAMILIES.items()}

    def config(self):
        """{get_config key: what keras.<family>.serialize() gives}."""
        return {key: family.serialize(self._normalised[key]) for key, family in self._FAMILIES.items()}
