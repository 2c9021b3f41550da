"""Submissions for the ``dropout`` assignment's grading tests.

Dropout is random, so the correct answers draw their random numbers in
different ways (uniform comparisons, binomial draws, Bernoulli via
``rng.choice``); the wrong ones each make one plausible mistake.
"""

from __future__ import annotations

from nbgrading import mutate, reference_answers

ASSIGNMENT = "dropout"
REFERENCE = reference_answers(ASSIGNMENT)

OTHER_STYLE = {
    "dropout_mask": '''def dropout_mask(shape, rate, rng):
    if not (rate >= 0 and rate < 1):
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    return rng.binomial(1, 1 - rate, size=shape).astype(bool)
''',
    "inverted_dropout": '''def inverted_dropout(x, rate, rng, training=True):
    if not (0 <= rate < 1):
        raise ValueError("rate must be in [0, 1)")
    out = np.array(x, dtype=np.float64)          # a copy
    if training and rate > 0:
        dropped = rng.uniform(size=out.shape) < rate
        out[dropped] = 0.0
        out[~dropped] /= (1.0 - rate)
    return out
''',
    "InvertedDropout": '''class InvertedDropout(keras.layers.Layer):
    def __init__(self, rate, seed=None, **kwargs):
        if rate < 0 or rate >= 1:
            raise ValueError("rate must be in [0, 1)")
        super().__init__(**kwargs)
        self.rate, self.seed = rate, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if training:
            u = keras.random.uniform(keras.ops.shape(inputs), seed=self.generator)
            mask = keras.ops.cast(u >= self.rate, inputs.dtype)
            return inputs * mask / (1.0 - self.rate)
        return inputs

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
''',
    "count_subnetworks": '''def count_subnetworks(n_units):
    if n_units < 0:
        raise ValueError("n_units must be >= 0")
    count = 1
    for _ in range(int(n_units)):
        count *= 2
    return count
''',
}

WRONG = {
    "no_scaling": (
        {**mutate(REFERENCE, "inverted_dropout", "return x * dropout_mask(x.shape, rate, rng) / (1 - rate)",
                  "return x * dropout_mask(x.shape, rate, rng)"),
         "InvertedDropout": REFERENCE["InvertedDropout"].replace("inputs / (1.0 - self.rate)", "inputs")},
        ["test_inverted_dropout_training", "test_InvertedDropout_call"],
    ),
    "keeps_with_probability_rate": (
        mutate(REFERENCE, "dropout_mask", "return rng.random(shape) >= rate", "return rng.random(shape) < rate"),
        ["test_dropout_mask_rate", "test_inverted_dropout_training"],
    ),
    "drops_at_inference": (
        {**mutate(REFERENCE, "inverted_dropout", "if not training or rate == 0:", "if rate == 0:"),
         "InvertedDropout": REFERENCE["InvertedDropout"].replace("if not training or self.rate == 0:",
                                                                  "if self.rate == 0:")},
        ["test_inverted_dropout_inference", "test_InvertedDropout_call", "test_InvertedDropout_fit"],
    ),
    "mutates_input": (
        {**REFERENCE, "inverted_dropout": '''def inverted_dropout(x, rate, rng, training=True):
    if not 0 <= rate < 1:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    if not training or rate == 0:
        return x
    x *= dropout_mask(x.shape, rate, rng)
    x /= (1 - rate)
    return x
'''},
        ["test_inverted_dropout_no_mutation"],
    ),
    "no_rate_check": (
        {**REFERENCE, **{k: v.replace("raise ValueError", "pass  # raise ValueError")
                         for k, v in REFERENCE.items() if k != "count_subnetworks"}},
        ["test_dropout_mask_errors", "test_inverted_dropout_errors", "test_InvertedDropout_errors"],
    ),
    "rate_one_accepted": (
        {**REFERENCE, **{k: v.replace("if not 0 <= rate < 1:", "if not 0 <= rate <= 1:")
                         for k, v in REFERENCE.items()}},
        ["test_dropout_mask_errors", "test_inverted_dropout_errors", "test_InvertedDropout_errors"],
    ),
    "one_mask_per_batch": (
        mutate(REFERENCE, "dropout_mask", "return rng.random(shape) >= rate",
               "shape = tuple(shape)\n    row = rng.random(shape[1:]) >= rate\n    return np.broadcast_to(row, shape).copy()"),
        ["test_dropout_mask_random"],
    ),
    "global_numpy_random": (
        mutate(REFERENCE, "dropout_mask", "return rng.random(shape) >= rate", "return np.random.random(shape) >= rate"),
        ["test_dropout_mask_random"],
    ),
    "integer_mask": (
        mutate(REFERENCE, "dropout_mask", "return rng.random(shape) >= rate",
               "return (rng.random(shape) >= rate).astype(int)"),
        ["test_dropout_mask_shape"],
    ),
    "layer_with_numpy": (
        mutate(REFERENCE, "InvertedDropout",
               "keep = keras.random.uniform(keras.ops.shape(inputs), seed=self.seed_generator) >= self.rate\n"
               "        return keras.ops.where(keep, inputs / (1.0 - self.rate), keras.ops.zeros_like(inputs))",
               "x = np.asarray(inputs)\n"
               "        return x * (np.random.default_rng().random(x.shape) >= self.rate) / (1.0 - self.rate)"),
        ["test_InvertedDropout_fit"],
    ),
    "layer_without_config": (
        mutate(REFERENCE, "InvertedDropout", 'return {**super().get_config(), "rate": self.rate, "seed": self.seed}',
               "return super().get_config()"),
        ["test_InvertedDropout_config", "test_InvertedDropout_fit"],
    ),
    "float_subnetworks": (
        mutate(REFERENCE, "count_subnetworks", "return 2 ** int(n_units)", "return 2.0 ** n_units"),
        ["test_count_subnetworks_values"],
    ),
    "squared_subnetworks": (
        mutate(REFERENCE, "count_subnetworks", "return 2 ** int(n_units)", "return int(n_units) ** 2"),
        ["test_count_subnetworks_values"],
    ),
    "delegates_to_reference": (
        {**REFERENCE, "count_subnetworks": "import nnh.dropout\n\n"
                                           "def count_subnetworks(n_units):\n"
                                           "    return nnh.dropout.count_subnetworks(n_units)\n"},
        ["test_count_subnetworks_values"],
    ),
}

CORRECT = {"reference": REFERENCE, "other_style": {**REFERENCE, **OTHER_STYLE}}
