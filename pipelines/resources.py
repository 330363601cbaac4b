"""Resources: where the lake and the landing folder are. Configured from the environment."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mtashift.lake import Lake


class LakeResource(dg.ConfigurableResource):
    """The lake root (local path today; one place to change for object storage)."""

    root: str

    def lake(self) -> Lake:
        return Lake.at(self.root)


class LandingResource(dg.ConfigurableResource):
    """The landing folder the servers and the sender hand files over in (read-only to us)."""

    root: str
    include_open: bool = False

    def path(self) -> Path:
        return Path(self.root).expanduser().resolve()


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "lake": LakeResource(root=dg.EnvVar("MTASHIFT_LAKE")),
        "landing": LandingResource(root=dg.EnvVar("MTASHIFT_LANDING")),
    }


def resources_for(*, lake: str | Path, landing: str | Path, include_open: bool = False) -> dict:
    return {
        "lake": LakeResource(root=str(Path(lake).resolve())),
        "landing": LandingResource(root=str(Path(landing).resolve()), include_open=include_open),
    }
