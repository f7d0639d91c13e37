"""(being written)"""
NODES: list = []
