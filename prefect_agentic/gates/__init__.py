"""Human approval gates: a gated step waits for a person's decision before it runs."""

from prefect_agentic.gates.answer import ApprovalAnswer, GateQuestion, use_answerer
from prefect_agentic.gates.hook import ApprovalGate, gate_key, needs_gate

__all__ = ["ApprovalAnswer", "ApprovalGate", "GateQuestion", "gate_key", "needs_gate", "use_answerer"]
