"""kubectl-cpumodel: find, explain and fix CPU-model live-migration blockers on KubeVirt/Harvester."""
__version__ = "0.1.0"
