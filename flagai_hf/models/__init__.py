"""Model families: one folder each, holding its configuration, modeling, tokenization and checkpoint key map."""
