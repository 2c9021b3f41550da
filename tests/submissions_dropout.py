"""Submissions for the ``dropout`` assignment's grading tests.

Dropout is random, so the correct answers draw their random numbers in
different ways (uniform comparisons, binomial draws, Bernoulli via
``rng.choice``); the wrong ones each make one plausible mistake.  The
Monte-Carlo answers run their passes one call at a time, in one call on
``n_samples`` stacked copies of ``x``, or stack Keras tensors; the entropies
are computed in float64 NumPy, with loops and ``math.log``, with a
``np.log(0)`` that warns (the tests silence it), or in float32 ``keras.ops``.
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
    "mc_dropout_predict": '''def mc_dropout_predict(model, x, n_samples=30):
    if not n_samples >= 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    out = None
    for t in range(n_samples):
        prediction = model(x, training=True).numpy()
        if out is None:
            out = np.empty((n_samples,) + prediction.shape, dtype=prediction.dtype)
        out[t] = prediction
    return out
''',
    "predictive_entropy": '''def predictive_entropy(samples):
    samples = np.asarray(samples)
    n_passes, n_examples, n_classes = samples.shape
    result = np.zeros(n_examples)
    for n in range(n_examples):
        for k in range(n_classes):
            p = sum(float(samples[t, n, k]) for t in range(n_passes)) / n_passes
            if p > 0:
                result[n] -= p * math.log(p)
    return result
''',
}

# one forward pass on n_samples stacked copies of x (Dropout draws a mask per row), and an
# entropy whose np.log(0) warns: the tests silence NumPy's warnings, the values are right
VECTORISED = {
    "mc_dropout_predict": '''def mc_dropout_predict(model, x, n_samples=30):
    if n_samples < 1:
        raise ValueError("n_samples must be >= 1")
    x = np.asarray(x)
    out = keras.ops.convert_to_numpy(model(np.concatenate([x] * n_samples, axis=0), training=True))
    return out.reshape(n_samples, len(x), -1)
''',
    "predictive_entropy": '''def predictive_entropy(samples):
    mean = np.mean(samples, axis=0)
    return -np.sum(np.where(mean > 0, mean * np.log(mean), 0.0), axis=-1)
''',
}

# Keras tensors all the way: a stacked tensor, a float32 entropy
KERAS_OPS = {
    "mc_dropout_predict": '''def mc_dropout_predict(model, x, n_samples=30):
    if n_samples < 1:
        raise ValueError(f"n_samples = {n_samples} must be >= 1")
    return keras.ops.stack([model(x, training=True) for _ in range(n_samples)], axis=0)
''',
    "predictive_entropy": '''def predictive_entropy(samples):
    mean = keras.ops.mean(keras.ops.convert_to_tensor(samples, dtype="float32"), axis=0)
    safe = keras.ops.maximum(mean, 1e-30)
    return -keras.ops.sum(keras.ops.where(mean > 0, mean * keras.ops.log(safe), 0.0), axis=1)
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
    "mc_dropout_off": (
        mutate(REFERENCE, "mc_dropout_predict", "model(x, training=True)", "model(x, training=False)"),
        ["test_mc_dropout_predict_training", "test_mc_dropout_predict_independent"],
    ),
    "mc_one_mask_for_all_passes": (
        mutate(REFERENCE, "mc_dropout_predict", "passes = [keras.ops.convert_to_numpy(model(x, training=True)) for _ in range(n_samples)]",
               "one = keras.ops.convert_to_numpy(model(x, training=True))\n    passes = [one] * n_samples"),
        ["test_mc_dropout_predict_independent"],
    ),
    "mc_returns_the_mean": (
        mutate(REFERENCE, "mc_dropout_predict", "return np.stack(passes)", "return np.stack(passes).mean(axis=0)"),
        ["test_mc_dropout_predict_shape", "test_mc_dropout_predict_no_dropout", "test_mc_dropout_predict_training"],
    ),
    "mc_one_pass_too_many": (
        mutate(REFERENCE, "mc_dropout_predict", "range(n_samples)", "range(n_samples + 1)"),
        ["test_mc_dropout_predict_shape", "test_mc_dropout_predict_no_dropout"],
    ),
    "mc_one_pass_too_few": (
        mutate(REFERENCE, "mc_dropout_predict", "range(n_samples)", "range(1, n_samples)"),
        ["test_mc_dropout_predict_shape", "test_mc_dropout_predict_no_dropout"],
    ),
    "mc_copies_grouped_by_example": (
        {**REFERENCE, "mc_dropout_predict": '''def mc_dropout_predict(model, x, n_samples=30):
    if n_samples < 1:
        raise ValueError("n_samples must be >= 1")
    x = np.asarray(x)
    out = keras.ops.convert_to_numpy(model(np.repeat(x, n_samples, axis=0), training=True))
    return out.reshape(n_samples, len(x), -1)
'''},
        ["test_mc_dropout_predict_no_dropout"],
    ),
    "mc_no_check": (  # n_samples = 0 gives an empty array instead of an error
        mutate(mutate(REFERENCE, "mc_dropout_predict", "raise ValueError", "pass  # raise ValueError"),
               "mc_dropout_predict", "return np.stack(passes)", "return np.array(passes)"),
        ["test_mc_dropout_predict_errors"],
    ),
    "entropy_mean_of_entropies": (
        {**REFERENCE, "predictive_entropy": '''def predictive_entropy(samples):
    samples = np.asarray(samples, dtype=float)
    logs = np.log(np.where(samples > 0, samples, 1.0))
    return -np.sum(samples * logs, axis=2).mean(axis=0)
'''},
        ["test_predictive_entropy_values", "test_predictive_entropy_edge_cases"],
    ),
    "entropy_log2": (
        mutate(REFERENCE, "predictive_entropy", "np.log(np.where(", "np.log2(np.where("),
        ["test_predictive_entropy_values", "test_predictive_entropy_edge_cases"],
    ),
    "entropy_nan_for_zeros": (
        mutate(REFERENCE, "predictive_entropy", "return -np.sum(np.where(positive, mean * np.log(np.where(positive, mean, 1.0)), 0.0), axis=1)", "return -np.sum(mean * np.log(mean), axis=1)"),
        ["test_predictive_entropy_values", "test_predictive_entropy_edge_cases"],
    ),
    "entropy_mean_over_examples": (
        mutate(REFERENCE, "predictive_entropy", ".mean(axis=0)", ".mean(axis=1)"),
        ["test_predictive_entropy_values", "test_predictive_entropy_edge_cases"],
    ),
    "entropy_sum_of_passes": (
        mutate(REFERENCE, "predictive_entropy", ".mean(axis=0)", ".sum(axis=0)"),
        ["test_predictive_entropy_values", "test_predictive_entropy_edge_cases"],
    ),
}

CORRECT = {"reference": REFERENCE, "other_style": {**REFERENCE, **OTHER_STYLE},
           "vectorised": {**REFERENCE, **VECTORISED}, "keras_ops": {**REFERENCE, **KERAS_OPS}}
