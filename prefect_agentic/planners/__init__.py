"""Planners: turn a goal into a plan, and a failure into a revised plan."""
