"""Tests of zapi-dashboard."""
