"""fedge: federated fine-tuning of frozen-backbone heads, from simulation to the edge."""

__version__ = "0.1.0"
