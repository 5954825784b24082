/// Keras's weight options of the multi-head layers: how kernels and biases are initialised,
/// and the regularizers and constraints that act in training.
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

extension WeightOptions {
    /// The regularizer of a weight: kernel_regularizer for a ".../kernel", bias_regularizer
    /// for a ".../bias", none for others.
    func regularizer(for spec: WeightSpec) -> Regularizer? {
        spec.name.hasSuffix("kernel") ? kernelRegularizer : spec.name.hasSuffix("bias") ? biasRegularizer : nil
    }

    /// The constraint of a weight, chosen as `regularizer(for:)` chooses.
    func constraint(for spec: WeightSpec) -> Constraint? {
        spec.name.hasSuffix("kernel") ? kernelConstraint : spec.name.hasSuffix("bias") ? biasConstraint : nil
    }
}

extension WeightStore {
    /// The weight regularizers' penalties, one per regularized weight, in weight order.
    func penalties(_ options: WeightOptions) -> [Double] {
        specs.indices.compactMap { i in options.regularizer(for: specs[i]).map { $0.penalty(of: values(i), specs[i].count) } }
    }

    /// Adds each weight regularizer's gradient to the weight's gradient, where asked for.
    func addPenaltyGradients(_ options: WeightOptions, _ grads: Gradients<T>) {
        for i in specs.indices {
            guard let regularizer = options.regularizer(for: specs[i]), let dw = grads.weights[i] else { continue }
            regularizer.addGradient(of: values(i), specs[i].count, factor: 1, into: dw)
        }
    }

    /// Applies each weight's constraint to it in place (what Keras's optimizer does after
    /// an update).
    func applyConstraints(_ options: WeightOptions) throws(AttentionError) {
        // All or nothing: no weight changes if any constraint's axis does not fit, or any
        // weight's float64 working copy could not be had.
        for spec in specs {
            guard let constraint = options.constraint(for: spec) else { continue }
            try constraint.validate(rank: spec.shape.count)
            try checkMemoryRequest(spec.count * MemoryLayout<Double>.stride,
                                   "the \(constraint.name) constraint's float64 copy of weight \(spec.name)")
        }
        for i in specs.indices {
            guard let constraint = options.constraint(for: specs[i]) else { continue }
            let p = pointer(i), count = specs[i].count
            var values = (0..<count).map { Double(p[$0]) }
            try constraint.apply(&values, shape: specs[i].shape)
            for e in 0..<count { p[e] = T(values[e]) }
        }
    }
}
