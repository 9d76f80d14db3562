"""Unit tests run without servers: the catalogue that services load from the
registry at start is installed here from the registry's seed migration (the
same document `make up` applies), parsed without PostgreSQL."""
import json
import re

from services.common import catalogue
from services.common.config import REPO_ROOT

SEED = REPO_ROOT / "services" / "registry" / "migrations" / "002_seed_assets_markets.sql"


def seed_catalogue() -> catalogue.Catalogue:
    """The seed file's two JSON arrays (assets, then markets) as a catalogue."""
    arrays = re.findall(r"jsonb_array_elements\('(\[.*?\])'::jsonb\)", SEED.read_text(), re.S)
    assets, markets = (json.loads(text) for text in arrays)
    return catalogue.Catalogue.from_document({
        "version": 1, "assets": {a["symbol"]: a for a in assets},
        "markets": {m["symbol"]: m for m in markets}})


# At import: test modules look assets up at module level, during collection.
catalogue.install(seed_catalogue())
