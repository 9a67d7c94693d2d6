"""`python -m hotdeal_cli`: the same as the `hotdeal` console script."""

from hotdeal_cli.main import main

if __name__ == "__main__":
    main()
