"""Reading (and, for the simulator, writing) CHEOPS products."""

from archi.io.drp import read_lightcurve, read_star_catalogue, read_visit
from archi.io.find import VisitProducts, find_visit_products

__all__ = ["read_visit", "read_lightcurve", "read_star_catalogue", "find_visit_products",
           "VisitProducts"]
