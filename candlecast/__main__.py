from candlecast.cli import main

main()
