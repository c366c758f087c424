"""Plans: the user-facing description of a goal as a DAG of verifiable steps."""

from prefect_agentic.plan.criteria import SuccessCriteria
from prefect_agentic.plan.loader import load_plan, parse_plan
from prefect_agentic.plan.models import Plan, Step
from prefect_agentic.plan.schema import plan_json_schema
from prefect_agentic.plan.validation import check_plan

__all__ = [
    "Plan",
    "Step",
    "SuccessCriteria",
    "check_plan",
    "load_plan",
    "parse_plan",
    "plan_json_schema",
]
