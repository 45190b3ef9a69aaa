"""Tests of the deployment artefacts: images/, helm/ and docker-compose.yaml (no Docker or cluster needed)."""
