"""What the SLURM site and the submitting shell say about a plan's job, asked on the login
node: the SBATCH_* variables that override the spec, the partitions' limits. Both front ends
ask it (`hpoc submit`, `hpoc check --preflight`); it knows nothing of either."""

# The SLURM job states of a job that has not ended (squeue's long names).
ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
          "REQUEUE_FED", "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"}
