from jisu.cli.main import main

main()
