"""Where the project lives: the dbt project is the repository root."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("STUDYIN_PROJECT_DIR", Path(__file__).resolve().parent.parent))
SEEDS_DIR = PROJECT_ROOT / "seeds"
ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"
# The reliability diagram of the prediction marts: a docs asset (dbt_project.yml asset-paths)
CALIBRATION_PLOT = PROJECT_ROOT / "assets" / "calibration" / "reliability.png"
