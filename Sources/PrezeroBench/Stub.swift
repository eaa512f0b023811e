public enum BenchStub {}
