"""Contenders and lineups, prompt formats, placement, loading and streaming generation."""
