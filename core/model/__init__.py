"""Model layer: the DisCoM-KD networks, their loss terms and the model bundle file they ship in."""
