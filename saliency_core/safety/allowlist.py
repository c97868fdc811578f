"""What an uploaded model's ``config.json`` may name: Keras built-ins, listed by name.

Safe mode already refuses Python code; these lists also refuse built-in
*functions* that change global state (``keras.config.set_epsilon`` used as an
activation, ``keras.utils.plot_model``), layers that read files or wrap code,
and anything Keras would look up outside its own modules. Every name here is
checked against the installed Keras by ``tests/test_safety_allowlist.py``.
"""

from __future__ import annotations

ACTIVATIONS = frozenset({
    "celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish",
    "relu", "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus",
    "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh",
    "tanh_shrink", "threshold",
})
"""Functions of ``keras.activations`` (all of them but get/serialize/deserialize)."""

ACTIVATION_MODULES = frozenset({"keras.activations", "keras.src.activations",
                                "keras.src.activations.activations", "builtins"})

INITIALIZERS = frozenset({
    "Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Identity",
    "IdentityInitializer", "LecunNormal", "LecunUniform", "Ones", "Orthogonal",
    "OrthogonalInitializer", "RandomNormal", "RandomUniform", "STFT", "STFTInitializer",
    "TruncatedNormal", "VarianceScaling", "Zeros",
    "constant", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "identity",
    "lecun_normal", "lecun_uniform", "ones", "orthogonal", "random_normal", "random_uniform",
    "stft", "truncated_normal", "variance_scaling", "zeros",
})

REGULARIZERS = frozenset({"L1", "L1L2", "L2", "OrthogonalRegularizer",
                          "l1", "l1_l2", "l2", "orthogonal_regularizer"})

CONSTRAINTS = frozenset({"MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm",
                         "max_norm", "min_max_norm", "non_neg", "unit_norm"})

DTYPE_POLICIES = frozenset({"DTypePolicy", "FloatDTypePolicy"})

DTYPES = frozenset({
    "float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool", "mixed_float16", "mixed_bfloat16",
})
"""Plain dtype names. Anything else is refused: a numpy dtype string such as
``"(100000,100000)f8"`` allocates a huge array from a tiny config."""

MODELS = frozenset({"Functional", "Sequential", "Model"})

LAYERS = frozenset({
    "Activation", "ActivityRegularization", "AdaptiveAveragePooling1D",
    "AdaptiveAveragePooling2D", "AdaptiveAveragePooling3D", "AdaptiveMaxPooling1D",
    "AdaptiveMaxPooling2D", "AdaptiveMaxPooling3D", "Add", "AdditiveAttention", "AlphaDropout",
    "Attention", "AutoContrast", "Average", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "AvgPool1D", "AvgPool2D", "AvgPool3D", "BatchNormalization",
    "Bidirectional", "CenterCrop", "Concatenate", "Conv1D", "Conv1DTranspose", "Conv2D",
    "Conv2DTranspose", "Conv3D", "Conv3DTranspose", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
    "Convolution1D", "Convolution1DTranspose", "Convolution2D", "Convolution2DTranspose",
    "Convolution3D", "Convolution3DTranspose", "Cropping1D", "Cropping2D", "Cropping3D",
    "Dense", "DepthwiseConv1D", "DepthwiseConv2D", "Dot", "Dropout", "ELU", "EinsumDense",
    "Embedding", "Flatten", "GRU", "GRUCell", "GaussianDropout", "GaussianNoise",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D", "GlobalMaxPool1D",
    "GlobalMaxPool2D", "GlobalMaxPool3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "GlobalMaxPooling3D", "GroupNormalization", "GroupQueryAttention", "Identity",
    "InputLayer", "LSTM", "LSTMCell", "LayerNormalization", "LeakyReLU", "Masking",
    "MaxPool1D", "MaxPool2D", "MaxPool3D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "Maximum", "Minimum", "MultiHeadAttention", "Multiply", "Normalization", "PReLU",
    "Permute", "RMSNormalization", "RNN", "RandomBrightness", "RandomContrast", "RandomCrop",
    "RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom", "ReLU", "RepeatVector",
    "Rescaling", "Reshape", "Resizing", "SeparableConv1D", "SeparableConv2D",
    "SeparableConvolution1D", "SeparableConvolution2D", "SimpleRNN", "SimpleRNNCell",
    "Softmax", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "StackedRNNCells",
    "Subtract", "TimeDistributed", "UnitNormalization", "UpSampling1D", "UpSampling2D",
    "UpSampling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
})
"""Built-in ``keras.layers`` classes an image classifier may use. Left out on
purpose: ``Lambda``, ``TFSMLayer``, ``JaxLayer``, ``FlaxLayer`` and
``TorchModuleWrapper`` (they carry or load code), the lookup and text layers
(they can read vocabulary files), and the audio and training-only layers."""

CODE_LAYERS = frozenset({"Lambda", "TFSMLayer", "JaxLayer", "FlaxLayer", "TorchModuleWrapper"})

SPECIAL_OBJECTS = frozenset({"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__",
                             "__ellipsis__", "__slice__"})
"""Values Keras's serialisation writes for tensors, arrays and slices (data, no code)."""

FAMILIES: dict[str, frozenset[str]] = {
    "layers": LAYERS,
    "models": MODELS,
    "initializers": INITIALIZERS,
    "regularizers": REGULARIZERS,
    "constraints": CONSTRAINTS,
    "dtype_policies": DTYPE_POLICIES,
}


def family_of(module: str) -> str | None:
    """The allowlist family of a Keras module name, or None when it is not expected.

    ``keras.layers`` and ``keras.src.layers.core.dense`` are both ``"layers"``;
    the bare ``keras`` module holds the model classes and dtype policies.
    """
    parts = module.split(".")
    if parts[0] != "keras":
        return None
    rest = parts[2:] if len(parts) > 1 and parts[1] == "src" else parts[1:]
    if not rest:
        return "keras"
    return rest[0] if rest[0] in FAMILIES else None
