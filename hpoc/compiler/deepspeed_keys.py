"""The keys DeepSpeed (0.19) reads in a config file, for a misspelt one: DeepSpeed skips a
top-level key it does not know without a word (`zero_optimisation`: the trials ran at
hpoc's ZeRO stage), and refuses one inside `zero_optimization` in every trial, after Ray
and the workers started. Only a key close to a known one is said: another DeepSpeed
version may know keys this list lacks."""

from __future__ import annotations

import difflib

TOP = (
    "activation_checkpointing", "aio", "amp", "autotuning", "bf16", "bfloat16", "checkpoint", "comet",
    "comms_logger", "communication_data_type", "compile", "compression_training", "csv_monitor",
    "curriculum_learning", "data_efficiency", "data_types", "dataloader_drop_last", "datastates_ckpt",
    "disable_allgather", "disable_python_gc", "dump_state", "eigenvalue", "elasticity", "expert_parallel",
    "flops_profiler", "fp16", "gradient_accumulation_steps", "gradient_allreduce_op", "gradient_clipping",
    "gradient_predivide_factor", "graph_harvesting", "hybrid_engine", "log_level",
    "managed_gradient_accumulation", "memory_breakdown", "nebula", "optimizer", "pipeline",
    "prescale_gradients", "progressive_layer_drop", "quantize_training", "scheduler",
    "seq_parallel_communication_data_type", "sequence_parallel_size", "sparse_attention", "sparse_gradients",
    "steps_per_print", "tensor_parallel", "tensorboard", "timers", "torch_autocast", "train_batch_size",
    "train_micro_batch_size_per_gpu", "use_data_before_expert_parallelism", "vocabulary_size",
    "wall_clock_breakdown", "wandb", "weight_quantization", "zero_allow_untested_optimizer",
    "zero_force_ds_cpu_optimizer", "zero_optimization",
)  # fmt: skip
# DeepSpeedZeroConfig's fields and their aliases
ZERO = (
    "allgather_bucket_size", "allgather_partitions", "allgather_sequential", "compute_grad_norm",
    "contiguous_gradients", "cpu_offload", "cpu_offload_param", "cpu_offload_use_pin_memory",
    "elastic_checkpoint", "enable_sanity_checks", "gather_16bit_weights_on_model_save",
    "ignore_unused_parameters", "leaf_module", "legacy_stage1", "load_from_fp32_weights",
    "log_trace_cache_warnings", "max_live_parameters", "max_reuse_distance", "memory_efficient_linear",
    "model_persistence_threshold", "module_granularity_threshold", "offload_optimizer", "offload_param",
    "overlap_comm", "override_module_apply", "param_persistence_threshold", "parameter_alignment",
    "pipeline_loading_checkpoint", "prefetch_bucket_size", "reduce_bucket_size", "reduce_scatter",
    "round_robin_gradients", "save_muon_momentum_buffer_in_memory", "stage", "stage3_allgather_sequential",
    "stage3_gather_16bit_weights_on_model_save", "stage3_gather_fp16_weights_on_model_save",
    "stage3_max_live_parameters", "stage3_max_reuse_distance", "stage3_model_persistence_threshold",
    "stage3_module_granularity_threshold", "stage3_param_persistence_threshold", "stage3_prefetch_bucket_size",
    "stage3_use_all_reduce_for_fetch_params", "sub_group_size", "use_all_reduce_for_fetch_params",
    "use_multi_rank_bucket_allreduce", "zenflow", "zero_hpz_partition_size", "zero_quantized_gradients",
    "zero_quantized_nontrainable_weights", "zero_quantized_weights",
)  # fmt: skip

# What DeepSpeed 0.19 removed: it refuses a file that sets one (its DeepSpeedConfigError, in
# every trial); 0.16 to 0.18, which hpoc takes too, read them. `amp` is left out: hpoc drops
# an HF file's `"enabled": "auto"` one (deepspeed_autos).
REMOVED_TOP = (
    "compression_training", "curriculum_learning", "eigenvalue", "elasticity", "graph_harvesting", "nebula",
    "progressive_layer_drop", "quantize_training", "sparse_attention", "sparse_gradients",
)  # fmt: skip
REMOVED_ZERO = ("mics_hierarchical_params_gather", "mics_shard_size", "zeropp_loco_param")


def meant(key: str, known: tuple[str, ...]) -> str | None:
    """The known key `key` misspells (another case, a British spelling, a missing suffix);
    None when it is known or like none of them."""
    if key in known:
        return None
    lower = {k.lower(): k for k in known}
    # 0.85: a note of the user's, `comment` (0.83 like `comet`), is no misspelling
    close = difflib.get_close_matches(key.lower(), list(lower), n=1, cutoff=0.85)
    if close:
        return lower[close[0]]
    longer = [k for k in lower if len(key) >= 10 and k.startswith(key.lower())]  # `gradient_accumulation`
    return lower[longer[0]] if len(longer) == 1 else None
