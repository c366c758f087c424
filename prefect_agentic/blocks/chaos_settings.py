"""A saved chaos spec: the faults a team injects on purpose, chosen by name per run."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field

from prefect_agentic.blocks.branding import documentation_url, logo_url
from prefect_agentic.blocks.registration import RegisteredBySlug
from prefect_agentic.chaos.spec import ChaosSpec, Fault


class ChaosSettings(RegisteredBySlug, Block):
    """Seed and faults of chaos runs (see docs/guides/chaos.md); ``agentic run --chaos-block NAME``."""

    _block_type_name = "Agentic Chaos Settings"
    _block_type_slug = "agentic-chaos-settings"
    _logo_url = logo_url("agentic-chaos-settings")  # type: ignore[assignment]
    _documentation_url = documentation_url("agentic-chaos-settings")  # type: ignore[assignment]
    _description = "Faults to inject into prefect-agentic runs on purpose, with a seed for reproducibility."

    seed: int = Field(default=0, description="Same seed, same plan: the same faults.")
    faults: list[Fault] = Field(default_factory=list, description="Kind, rate, tools/steps/attempts selectors.")

    def spec(self) -> ChaosSpec:
        return ChaosSpec(seed=self.seed, faults=self.faults)
