"""wildvision: detect online wildlife trade in images (Kulkarni & Di Minin, 2022)."""
