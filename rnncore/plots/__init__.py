"""Every plotly figure builder of the project.

The Streamlit pages and the benchmark reports both call these, so a chart looks the same
wherever it is shown. Builders are pure: data in (arrays, DataFrames, dicts), a
``plotly.graph_objects.Figure`` out; no computation of the quantities themselves.
``training`` (the Train page), ``gradflow`` (the Gradient Flow page), ``bench`` (the
Benchmarks page and reports), ``textbook``, ``designs``, ``readers`` and ``couplets``
(the Architectures page), ``_base`` (template, colours, log axes).
"""
from rnncore.plots._base import CELL_COLORS, TEMPLATE
from rnncore.plots.bench import (ENGINE_COLORS, FORM_COLORS, STEP_PART_COLORS,
                                 bptt_memory_figure, bptt_time_figure, convergence_figure,
                                 decoding_figure,
                                 gradient_fidelity_figure, layer_benchmark_figure, qps_figure,
                                 step_breakdown_figure)
from rnncore.plots.couplets import COUPLET_COLORS, couplet_figure
from rnncore.plots.designs import (PATTERN_COLORS, PLACE_COLORS, depth_figure,
                                   patterns_figure)
from rnncore.plots.gradflow import (activation_heatmap_figure, gate_stats_figure,
                                    grad_norm_heatmap_figure, jacobian_lag_figure,
                                    truncation_bias_figure)
from rnncore.plots.readers import (LENGTH_COLORS, LENGTH_NAMES, READER_COLORS, READER_NAMES,
                                   length_distribution_figure, reader_accuracy_figure)
from rnncore.plots.textbook import (EXPOSURE_COLORS, EXPOSURE_NAMES, exposure_figure,
                                    leaky_lag_figure, retention_figure, tree_chain_figure)
from rnncore.plots.training import grad_norm_figure, throughput_figure, training_loss_figure

__all__ = [
    "CELL_COLORS", "ENGINE_COLORS", "FORM_COLORS", "STEP_PART_COLORS", "decoding_figure", "TEMPLATE", "activation_heatmap_figure",
    "bptt_memory_figure", "bptt_time_figure", "convergence_figure", "gate_stats_figure",
    "grad_norm_figure", "grad_norm_heatmap_figure", "gradient_fidelity_figure",
    "jacobian_lag_figure", "layer_benchmark_figure", "qps_figure", "step_breakdown_figure",
    "throughput_figure", "training_loss_figure", "truncation_bias_figure",
    "EXPOSURE_COLORS", "EXPOSURE_NAMES", "exposure_figure", "leaky_lag_figure",
    "retention_figure", "tree_chain_figure", "COUPLET_COLORS", "couplet_figure",
    "LENGTH_COLORS", "LENGTH_NAMES", "READER_COLORS", "READER_NAMES",
    "length_distribution_figure", "reader_accuracy_figure",
    "PATTERN_COLORS", "PLACE_COLORS", "depth_figure", "patterns_figure",
]
