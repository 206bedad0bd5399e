"""Home: what a recurrent network computes, how BPTT differentiates it, and the device."""
import streamlit as st

from rnncore.jobs import device_summary

st.title("rnncore — recurrent networks and BPTT you can watch")
st.info(f"Compute device: **{device_summary()}**")

st.markdown(
    """
This app trains character-level recurrent networks (vanilla RNN, LSTM, GRU) on Tang-dynasty
poems, writes new poems with them, and lets you look inside backpropagation through time
(BPTT). The gradients are computed by a hand-derived backward pass (the `bptt` engine) that
the tests check against PyTorch's autograd and `torch.nn`.

**Pages:** *Train* runs a training job in the background and plots its loss live;
*Generate* writes poems with the bundled model or one you trained; *Gradient Flow* shows
how gradients vanish or explode across time; *Benchmarks* compares the engines' speed.
"""
)

st.header("The recurrence")
st.markdown(
    "At each time step the network reads one character $x_t$ (as an embedding vector) and "
    "updates its hidden state $h_t$ from the previous one, with the **same** weights at every step:"
)
st.latex(r"h_t = \tanh\left(W\,h_{t-1} + U\,x_t + b\right), \qquad o_t = V\,h_t + c")
st.markdown("The output scores $o_t$ become a distribution over the next character by a softmax:")
st.latex(r"p(x_{t+1} = j \mid x_{\le t}) = \operatorname{softmax}(o_t)_j = "
         r"\frac{e^{o_{t,j}}}{\sum_k e^{o_{t,k}}}")
st.markdown(
    "Training minimises the cross-entropy **summed over time**; the app reports it per "
    "character in bits (bits per character, bpc = loss / ln 2):"
)
st.latex(r"L = \sum_{t=1}^{T} L_t = -\sum_{t=1}^{T} \log p(x_{t+1} \mid x_{\le t})")

st.header("Backpropagation through time")
st.markdown(
    "Because $W$ is shared by every step, its gradient is the **sum over time steps** of "
    "each step's local contribution, where $\\delta_t = \\partial L / \\partial h_t$ is "
    "carried backwards through the recurrence:"
)
st.latex(r"\frac{\partial L}{\partial W} = \sum_{t=1}^{T} "
         r"\left(\delta_t \odot (1 - h_t^2)\right) h_{t-1}^{\top}, \qquad "
         r"\delta_t = \frac{\partial L_t}{\partial h_t} + "
         r"W^{\top}\!\left(\delta_{t+1} \odot (1 - h_{t+1}^2)\right)")
st.markdown("How much a loss at step $T$ depends on an earlier state $h_k$ is a product of Jacobians:")
st.latex(r"\frac{\partial h_T}{\partial h_k} = \prod_{t=k+1}^{T} "
         r"\operatorname{diag}\!\left(1 - h_t^2\right) W")

st.header("Vanishing and exploding gradients")
st.markdown(
    "Since $|\\tanh'| \\le 1$, the norm of that product is at most "
    "$\\lVert W \\rVert^{T-k}$. If the largest singular value of $W$ is below 1 the "
    "gradient from far-away steps **vanishes** geometrically with the lag $T-k$; when the "
    "spectral radius of $W$ is above 1 and the units are not saturated, it can **explode**. "
    "Gradient-norm clipping rescales an exploding gradient; LSTM and GRU fight vanishing "
    "with an additive, gated cell path ($c_t = f_t \\odot c_{t-1} + i_t \\odot g_t$), whose "
    "Jacobian $\\partial c_t / \\partial c_{t-1} = \\operatorname{diag}(f_t)$ stays near 1 "
    "while the forget gate is open."
)

st.header("Truncated BPTT")
st.markdown(
    "Long streams are cut into chunks of $k$ steps. The hidden state is carried from one "
    "chunk to the next, but the gradient is stopped at the chunk boundary, so a step's "
    "gradient only sees at most $k$ steps back:"
)
st.latex(r"\frac{\partial L}{\partial W} \approx \sum_{t} \sum_{s=\max(t-k+1,\,1)}^{t} "
         r"\frac{\partial L_t}{\partial h_t}\,\frac{\partial h_t}{\partial h_s}\,"
         r"\frac{\partial^{+} h_s}{\partial W}")
st.markdown(
    "This **regular truncation** is biased: dependencies longer than $k$ are never learned "
    "from. **Randomized truncation** (as d2l 9.7 describes it) passes the gradient back "
    "through each step with probability $p$, scaled by $1/p$, and cuts it otherwise: the cut "
    "lands a random (geometric) number of steps back, and because every term's expected "
    "factor is $p \\cdot 1/p = 1$ the gradient is unbiased, at the price of more variance. "
    "*Full* BPTT trains each poem as one sequence from a zero state."
)
