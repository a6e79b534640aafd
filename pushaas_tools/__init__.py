"""Operator tools for a PushaaS deployed on AWS (run from a checkout, never in Lambda)."""
