"""Blueprints, one per area of the product."""
