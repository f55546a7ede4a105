"""Keras' Adam with each variable's update in one kernel (models.training.make_optimizer)."""

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="aitm")
class FusedAdam(tf.keras.optimizers.Adam):
  """`tf.keras.optimizers.Adam`, the same update, applied by TensorFlow's fused
  `ResourceApplyAdam` kernel: one op per variable and step instead of Keras' dozen
  (reads, assigns, scatters), each a pass over the variable.

  Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, as Keras
  writes it, with t = iterations + 1 and g the gradient:

      m <- m + (g - m)(1 - beta_1)        v <- v + (g^2 - v)(1 - beta_2)
      w <- w - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) m / (sqrt(v) + epsilon)

  An embedding table's gradient arrives as IndexedSlices, its repeated ids
  already summed by Keras; it is scattered into a dense gradient first. That is
  Keras' own sparse update: it too decays every row's m and v each step and
  moves every row (a row without gradient keeps moving on its momentum), only
  in more passes. With `amsgrad` or `adaptive_epsilon`, Keras' own update runs.
  """

  def update_step(self, gradient, variable):
    """Applies one Adam step to `variable` (dense or IndexedSlices `gradient`)."""
    if self.amsgrad or getattr(self, "adaptive_epsilon", False):
      return super().update_step(gradient, variable)
    if isinstance(gradient, tf.IndexedSlices):
      gradient = tf.convert_to_tensor(gradient)
    dtype = variable.dtype
    step = tf.cast(self.iterations + 1, dtype)
    beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
    index = self._index_dict[self._var_key(variable)]
    return tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=self._momentums[index].handle,
        v=self._velocities[index].handle, beta1_power=tf.pow(beta_1, step),
        beta2_power=tf.pow(beta_2, step), lr=tf.cast(self.learning_rate, dtype),
        beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype),
        grad=tf.cast(gradient, dtype), use_locking=False)
