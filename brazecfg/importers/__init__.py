"""Importers: other tools' configs turned into brazecfg projects."""
