"""mergekit 0.1.5's config keys and parameters, read from its source: what each does, and what chatvec does
instead where it cannot honour one exactly (the messages of cli/mergekit_config.py are built from these)."""

KEYS = ("merge_method", "base_model", "models", "parameters", "dtype", "out_dtype", "tokenizer_source", "tokenizer")
UNKNOWN = ("not a mergekit 0.1.5 key (mergekit ignores it silently)", "remove it")
REFUSED_KEYS = {  # key: (what it does, what chatvec does instead)
    "slices": ("merges layer ranges", "chatvec merges whole checkpoints: list the models under models:"),
    "modules": ("merges module by module", "chatvec merges whole checkpoints: list the models under models:"),
    "chat_template": ("sets mergekit's template", "remove it: chatvec takes chat's (cp's: --chat-template-from cp)"),
}
# Per method: its shared parameters (read from the top level only) with their defaults, and its per-model ones.
TA_SHARED = {"normalize": False, "lambda": 1.0, "rescale": False, "int8_mask": False}
METHODS = {"task_arithmetic": (TA_SHARED, ("weight", "density")), "linear": ({"normalize": True}, ("weight",))}
WHY = {  # parameter: (its no-op value, what another value does, the fix)
    "normalize": (False, "divides by the sum of the weights", "set parameters.normalize: false"),
    "lambda": (1.0, "scales cp's task vector too, so cp is not added whole", "set lambda: 1 and scale chat's weight"),
    "rescale": (False, "asks for DARE rescaling, which chatvec does not do", "remove it"),
    "int8_mask": (False, "is an option of sign-consensus (ties) merges, which chatvec does not do", "remove it"),
    "density": (1.0, "sparsifies task vectors (task_arithmetic ignores it); chatvec adds them whole", "remove it"),
}
FITS = {  # method: (what it computes, the weights that make it the Chat Vector merge)
    "task_arithmetic": ("base + w*(chat - base) + 1*(cp - base)", "give cp weight 1 and chat weight alpha"),
    "linear": ("1*cp + w*chat - w*base", "give cp 1, chat alpha (not 0) and base -alpha (with chat's filters)"),
}
TOKENIZER = {  # tokenizer setting: what it does that chatvec does not
    "union": "merges the vocabularies, renumbering cp's extra tokens",
    "base": "cuts the vocabulary to base's, dropping cp's extra rows",
    "tokens": "sets the embeddings of chosen tokens; chatvec merges every row",
    "pad_to_multiple_of": "pads the vocabulary rows; chatvec keeps cp's",
}
DTYPES = {"bfloat16": "bf16", "float16": "f16", "float32": "f32", "float64": None}
FLAGS = ("normalize", "rescale", "int8_mask")
