"""FLOPs of a model's training step, counted from the ops of its traced graph (bin/benchmark).

FLOPs are counted, not estimated: `count_flops` walks the ops of a traced graph and adds, from
their static shapes,

    Conv2D, Conv2DBackpropInput, Conv2DBackpropFilter   2 * prod(output-grad shape) * kh * kw * c_in
    MatMul, BatchMatMul                                  2 * m * n * k
    elementwise and reduction ops                        1 per element (reported apart)

The training count is of the graph of one forward+backward pass of the loss (model.elbo, the
free-bits loss, tape.gradient with respect to every trainable variable) on the global batch, so it
includes the backward pass (about 2x the forward: a gradient for the inputs and one for the
weights of every conv/matmul); the optimizer update, Polyak averaging and all-reduce are a few
flops per parameter and are left out. `flops_per_image` counts matmul/conv multiply-adds as 2 FLOPs
(the convention of the matmul peak it is divided by).
"""

import math
from typing import Dict, List, Optional

import tensorflow as tf

from vlae_tf.training import replica_gradients

_ELEMENTWISE_OPS = frozenset([
    'Add', 'AddV2', 'Sub', 'Mul', 'RealDiv', 'Div', 'DivNoNan', 'Neg', 'Square', 'Sqrt', 'Rsqrt',
    'Exp', 'Expm1', 'Log', 'Log1p', 'Softplus', 'Sigmoid', 'Tanh', 'Elu', 'Relu', 'EluGrad',
    'ReluGrad', 'SigmoidGrad', 'TanhGrad', 'SoftplusGrad', 'Maximum', 'Minimum', 'BiasAdd',
    'BiasAddGrad', 'SquaredDifference', 'Reciprocal', 'ReciprocalGrad', 'RsqrtGrad', 'SqrtGrad',
    'Abs', 'Pow', 'SelectV2', 'Select', 'AddN'])
_REDUCTION_OPS = frozenset(['Sum', 'Mean', 'Max', 'Min', 'Prod'])


def _shape(tensor) -> Optional[List[int]]:
  shape = tensor.shape
  if shape.rank is None or None in shape.as_list():
    return None
  return shape.as_list()


def _op_flops(op) -> Optional[float]:
  """Multiply-add FLOPs (2 per MAC) of one conv/matmul op, None when a shape is not static."""
  kind = op.type
  if kind == 'Conv2D':
    filters, output = _shape(op.inputs[1]), _shape(op.outputs[0])
    if filters is None or output is None:
      return None
    kh, kw, cin, _ = filters
    return 2.0 * math.prod(output) * kh * kw * cin
  if kind in ('Conv2DBackpropInput', 'Conv2DBackpropFilter'):
    # inputs: (input_sizes, filter, out_backprop) / (input, filter_sizes, out_backprop).
    filters = _shape(op.inputs[1]) if kind == 'Conv2DBackpropInput' else _shape(op.outputs[0])
    grad = _shape(op.inputs[2])
    if filters is None or grad is None:
      return None
    kh, kw, cin, _ = filters
    return 2.0 * math.prod(grad) * kh * kw * cin
  if kind == 'DepthwiseConv2dNative':
    filters, output = _shape(op.inputs[1]), _shape(op.outputs[0])
    if filters is None or output is None:
      return None
    return 2.0 * math.prod(output) * filters[0] * filters[1]
  if kind == 'MatMul':
    a, output = _shape(op.inputs[0]), _shape(op.outputs[0])
    if a is None or output is None:
      return None
    k = a[0] if op.get_attr('transpose_a') else a[1]
    return 2.0 * math.prod(output) * k
  if kind in ('BatchMatMul', 'BatchMatMulV2', 'BatchMatMulV3'):
    a, output = _shape(op.inputs[0]), _shape(op.outputs[0])
    if a is None or output is None:
      return None
    k = a[-2] if op.get_attr('adj_x') else a[-1]
    return 2.0 * math.prod(output) * k
  return 0.0


def _function_graph(graph, name):
  """The FuncGraph of the library function `name` called from `graph` (or an enclosing graph).

  Nested tf.functions (e.g. TFP's `WeightNorm.call`) and their gradients are `PartitionedCall`
  ops whose bodies are library functions. TensorFlow has no public accessor for them; `Graph.
  _get_function` is the one it uses itself, so a TF upgrade that breaks it fails loudly here.
  """
  while graph is not None:
    function = graph._get_function(name)  # pylint: disable=protected-access
    if function is not None:
      return function.graph
    graph = getattr(graph, 'outer_graph', None)
  raise LookupError(f'Function {name} not found in the graph library.')


def count_flops(graph) -> Dict[str, float]:
  """FLOPs of one run of `graph` (e.g. `concrete_function.graph`), from static shapes.

  Function calls (`PartitionedCall`, `StatefulPartitionedCall`) are counted through their bodies,
  recursively; loop bodies (`While`) once, as if they ran one iteration (the training ELBO of the
  shipped models has no loop).

  Returns:
    dict: matmul_conv (convolutions and matrix products, 2 per multiply-add), elementwise (one per
    output element of elementwise ops, one per input element of reductions), unknown_shape_ops
    (conv/matmul ops left out because a shape is dynamic), function_calls, loops.
  """
  totals = dict(matmul_conv=0.0, elementwise=0.0, unknown_shape_ops=0, function_calls=0, loops=0)

  def visit(graph):
    for op in graph.get_operations():
      flops = _op_flops(op)
      if flops is None:
        totals['unknown_shape_ops'] += 1
      else:
        totals['matmul_conv'] += flops
      if op.type in _ELEMENTWISE_OPS and op.outputs and _shape(op.outputs[0]) is not None:
        totals['elementwise'] += math.prod(_shape(op.outputs[0]))
      elif op.type in _REDUCTION_OPS and _shape(op.inputs[0]) is not None:
        totals['elementwise'] += math.prod(_shape(op.inputs[0]))
      elif op.type in ('PartitionedCall', 'StatefulPartitionedCall'):
        totals['function_calls'] += 1
        visit(_function_graph(graph, op.get_attr('f').name))
      elif op.type in ('While', 'StatelessWhile'):
        totals['loops'] += 1
        visit(_function_graph(graph, op.get_attr('body').name))

  visit(graph)
  return totals


def loss_function(model, global_batch_size: int, free_bits_lambda: float, backward: bool = True):
  """A tf.function of (images, seed): the loss of one replica and, if `backward`, its gradients."""

  def step(images, seed):
    with tf.GradientTape() as tape:
      outputs = model.elbo(images, seed, training=True)
      loss = replica_gradients.replica_loss(outputs, global_batch_size, free_bits_lambda, model.num_dims,
                                   num_replicas=1)
    if not backward:
      return loss
    return loss, tape.gradient(loss, model.trainable_variables)

  return step


def train_step_flops(model, batch_size: int, free_bits_lambda: float,
                     backward: bool = True) -> Dict[str, float]:
  """`count_flops` of one forward(+backward) pass of the training loss on a batch, per image."""
  step = tf.function(loss_function(model, batch_size, free_bits_lambda, backward),
                     autograph=False)
  graph = step.get_concrete_function(
      tf.TensorSpec([batch_size, *model.image_shape], tf.float32),
      tf.TensorSpec([2], tf.int32)).graph
  counts = count_flops(graph)
  for key in ('matmul_conv', 'elementwise'):
    counts[key] /= batch_size
  return counts
