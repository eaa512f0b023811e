import Testing
import PrezeroBench
