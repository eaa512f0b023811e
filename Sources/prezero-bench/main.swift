import PrezeroBench

BenchCommand.main()
