/// Keras's weight options of the multi-head layers: how kernels and biases are initialised,
/// and the regularizers and constraints kept in the config (they act in training).
public struct WeightOptions: Sendable, Equatable {
    public var kernelInitializer = Initializer.glorotUniform
    public var biasInitializer = Initializer.zeros
    public var kernelRegularizer: Regularizer?
    public var biasRegularizer: Regularizer?
    public var activityRegularizer: Regularizer?
    public var kernelConstraint: Constraint?
    public var biasConstraint: Constraint?

    public init() {}

    /// Throws for a parameter Keras refuses, naming the option.
    public func validate() throws(AttentionError) {
        try kernelInitializer.validate()
        try biasInitializer.validate()
        for (regularizer, slot) in [(kernelRegularizer, "kernel_regularizer"), (biasRegularizer, "bias_regularizer"),
                                    (activityRegularizer, "activity_regularizer")] {
            do { try regularizer?.validate() } catch { throw .invalid("\(slot): \(error.message)") }
        }
        for (constraint, slot) in [(kernelConstraint, "kernel_constraint"), (biasConstraint, "bias_constraint")] {
            do { try constraint?.validate(rank: nil) } catch { throw AttentionError(error.kind, "\(slot): \(error.message)") }
        }
    }
}
